"""Taking a chip out of prospecting: by hand (Block) or because the provider restricted it.

The seeds' incident contained a restricted number with two SQL updates
(`pode_prospectar=false, pode_followup=false`, campaign `pausada`); these are
the same steps as services, shared by the outbox, the admin and commands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext

from channels.models import Chip

logger = logging.getLogger(__name__)

# Chips in these states send nothing; their messages wait.
NOT_SENDING_STATUSES = (Chip.Status.BANNED, Chip.Status.DISCONNECTED)

# What higher layers do when a chip stops sending what the business starts
# (campaigns move its unsent first messages to healthy chips, or pause).
# Called inside the caller's transaction with the chip locked and its new
# permissions already set on the instance; each returns the names of what it
# paused, for the alert. Registered in the higher app's AppConfig.ready.
ChipRevokedHook = Callable[[Chip, str, datetime], list[str]]
CHIP_REVOKED_HOOKS: list[ChipRevokedHook] = []


def chip_revoked_notify(*, chip: Chip, reason: str, now: datetime) -> list[str]:
    paused: list[str] = []
    for hook in CHIP_REVOKED_HOOKS:
        paused += hook(chip, reason, now)
    return paused


def chip_quarantine(chip: Chip, *, error: str, now: datetime) -> tuple[bool, list[str]]:
    """The provider restricted the number. `chip` is locked by the caller, who saves it.

    Returns (first time, names of paused campaigns); the returned fields
    changed are status, status_changed_at, can_prospect, can_follow_up.
    """
    first_time = chip.status != Chip.Status.RESTRICTED
    if first_time:
        chip.status = Chip.Status.RESTRICTED
        chip.status_changed_at = now
    chip.can_prospect = False
    chip.can_follow_up = False
    paused = chip_revoked_notify(
        chip=chip,
        reason=gettext("Chip %(chip)s restricted by the provider") % {"chip": chip.name},
        now=now,
    )
    return first_time, paused


QUARANTINE_FIELDS = ["status", "status_changed_at", "can_prospect", "can_follow_up"]


def chip_block(*, chips: QuerySet[Chip], reason: str | None = None) -> tuple[int, int]:
    """Stop prospecting and follow-ups on these chips; pause campaigns left without a chip.

    Replies to leads who write keep flowing. Returns (chips blocked, campaigns paused).
    """
    now = timezone.now()
    reason = reason or gettext("Blocked by operations")
    blocked = paused = 0
    with transaction.atomic():
        for chip in _locked(chips):
            if chip.can_prospect or chip.can_follow_up:
                blocked += 1
            chip.can_prospect = False
            chip.can_follow_up = False
            chip.save(update_fields=["can_prospect", "can_follow_up", "updated_at"])
            paused += len(
                chip_revoked_notify(chip=chip, reason=f"Chip {chip.name}: {reason}", now=now)
            )
    logger.warning("chips blocked: %s; campaigns paused: %s", blocked, paused)
    return blocked, paused


def chip_unblock(*, chips: QuerySet[Chip]) -> int:
    """Let these chips prospect and follow up again; a restricted one counts as connected.

    Paused campaigns stay paused: resuming them is a manager's decision.
    """
    now = timezone.now()
    count = 0
    with transaction.atomic():
        for chip in _locked(chips):
            fields = ["can_prospect", "can_follow_up", "updated_at"]
            chip.can_prospect = True
            chip.can_follow_up = True
            if chip.status == Chip.Status.RESTRICTED:
                chip.status = Chip.Status.CONNECTED
                chip.status_changed_at = now
                fields += ["status", "status_changed_at"]
            chip.save(update_fields=fields)
            count += 1
    return count


def _locked(chips: QuerySet[Chip]) -> QuerySet[Chip]:
    # A fresh queryset: the admin's carries outer joins that cannot be locked.
    return Chip.objects.filter(pk__in=chips.values("pk")).select_for_update(no_key=True)
