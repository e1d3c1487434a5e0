"""Taking a chip out of prospecting: by hand (Block) or because the provider restricted it.

The seeds' incident contained a restricted number with two SQL updates
(`pode_prospectar=false, pode_followup=false`, campaign `pausada`); these are
the same steps as services, shared by the outbox, the admin and commands.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from channels.models import Chip

if TYPE_CHECKING:
    from campaigns.models import Campaign

logger = logging.getLogger(__name__)

# Chips in these states send nothing; their messages wait.
NOT_SENDING_STATUSES = (Chip.Status.BANNED, Chip.Status.DISCONNECTED)


def _usable_for(campaign: Campaign, chip: Chip) -> bool:
    from campaigns.models import Campaign

    if chip.status in (*NOT_SENDING_STATUSES, Chip.Status.RESTRICTED):
        return False
    if campaign.kind == Campaign.Kind.FOLLOW_UP:
        return chip.can_follow_up
    return chip.can_prospect


def campaigns_pause_without_usable_chip(
    *, chip: Chip, reason: str, now: datetime | None = None
) -> list[Campaign]:
    """Pause the active campaigns of `chip` that have no other chip able to send them.

    Call after `chip` lost its permissions (its in-memory state is what counts).
    """
    from campaigns.models import Campaign

    now = now or timezone.now()
    paused = []
    active = Campaign.objects.filter(
        chips=chip, status__in=[Campaign.Status.RUNNING, Campaign.Status.SCHEDULED]
    ).prefetch_related("chips")
    for campaign in active:
        if any(
            _usable_for(campaign, other) for other in campaign.chips.all() if other.pk != chip.pk
        ):
            continue
        updated = Campaign.objects.filter(
            pk=campaign.pk, status__in=[Campaign.Status.RUNNING, Campaign.Status.SCHEDULED]
        ).update(status=Campaign.Status.PAUSED, paused_at=now, paused_reason=reason[:200])
        if updated:
            paused.append(campaign)
    return paused


def chip_quarantine(chip: Chip, *, error: str, now: datetime) -> tuple[bool, list[Campaign]]:
    """The provider restricted the number. `chip` is locked by the caller, who saves it.

    Returns (first time, paused campaigns); the returned fields changed are
    status, status_changed_at, can_prospect, can_follow_up.
    """
    first_time = chip.status != Chip.Status.RESTRICTED
    if first_time:
        chip.status = Chip.Status.RESTRICTED
        chip.status_changed_at = now
    chip.can_prospect = False
    chip.can_follow_up = False
    paused = campaigns_pause_without_usable_chip(
        chip=chip, reason=f"Chip {chip.name} restrito pelo provedor", now=now
    )
    return first_time, paused


QUARANTINE_FIELDS = ["status", "status_changed_at", "can_prospect", "can_follow_up"]


def chip_block(
    *, chips: QuerySet[Chip], reason: str = "Bloqueado pela operação"
) -> tuple[int, int]:
    """Stop prospecting and follow-ups on these chips; pause campaigns left without a chip.

    Replies to leads who write keep flowing. Returns (chips blocked, campaigns paused).
    """
    now = timezone.now()
    blocked = paused = 0
    with transaction.atomic():
        for chip in _locked(chips):
            if chip.can_prospect or chip.can_follow_up:
                blocked += 1
            chip.can_prospect = False
            chip.can_follow_up = False
            chip.save(update_fields=["can_prospect", "can_follow_up", "updated_at"])
            paused += len(
                campaigns_pause_without_usable_chip(
                    chip=chip, reason=f"Chip {chip.name}: {reason}", now=now
                )
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
