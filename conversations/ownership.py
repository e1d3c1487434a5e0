"""Who owns a conversation (agent, human, paused, closed), and the handoff lifecycle.

`conversation_set_owner` is the only writer of `Conversation.controlled_by`:
it locks the conversation, writes the owner with who set it, when and why,
keeps the derived `agent_paused` in step, leaves an `OwnerChange` row and
moves the conversation's handoff along requested -> assigned -> resolved,
timing each step. The outbox re-checks the owner before any reply leaves, so
a reply queued just before a takeover is cancelled, whichever path took it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from conversations.models import Conversation, Handoff, OwnerChange
from core.metrics import counter_inc, histogram_observe

logger = logging.getLogger(__name__)

Owner = Conversation.ControlledBy
ACTIVE_HANDOFF = (Handoff.Status.OPEN, Handoff.Status.ACCEPTED)

# Called after commit with (handoff_id, event) for "opened", "assigned",
# "resolved": Slack and Chatwoot register here (a higher layer, or a module
# that must not be imported by every caller of the owner service).
HandoffListener = Callable[[int, str], None]
_listeners: list[HandoffListener] = []


class OwnershipError(Exception):
    """The change is not allowed (a closed conversation keeps its owner)."""


def handoff_listener_register(listener: HandoffListener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def _notify_after_commit(handoff_id: int, event: str) -> None:
    def _run() -> None:
        for listener in list(_listeners):
            try:
                listener(handoff_id, event)
            except Exception:  # a notifier never breaks the owner change
                logger.exception("handoff listener %r failed", listener)

    transaction.on_commit(_run)


def conversation_set_owner(
    *,
    conversation: Conversation,
    owner: str,
    reason: str,
    actor: Any = None,
    actor_label: str = "",
    handoff_reason: str = "",
    handoff_note: str = "",
) -> OwnerChange | None:
    """Make `owner` the conversation's owner; None when it already was (nothing recorded).

    `actor` is the user who did it (an SDR, ops) or None for the system, then
    named by `actor_label` ("agente", "chatwoot", "whatsapp"). A human owner
    always has an active handoff (`handoff_reason`, default: an SDR took it);
    giving back to the agent or closing resolves it.
    """
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    label = (user.get_username() if user is not None else actor_label) or "sistema"
    now = timezone.now()
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        previous = locked.controlled_by
        if locked.status == Conversation.Status.CLOSED or previous == Owner.CLOSED:
            if owner == Owner.CLOSED:
                return None
            raise OwnershipError(
                gettext("Conversation closed: a new message from the lead opens another.")
            )
        if owner == Owner.HUMAN:
            handoff = _handoff_request(
                locked, reason=handoff_reason or _default_reason(user), note=handoff_note
            )
            if user is not None:
                _handoff_assign(handoff, user=user, now=now)
        elif owner in (Owner.AGENT, Owner.CLOSED):
            _handoff_resolve(locked, now=now, note=reason)
        # An SDR taking a conversation some other human had is a change of
        # hands worth recording; the same owner again only extends a takeover.
        new_hands = (
            owner == Owner.HUMAN and user is not None and locked.owner_changed_by_id != user.pk
        )
        if previous == owner and not new_hands:
            if owner == Owner.HUMAN:
                _extend_human(locked, now=now)
            _copy_owner(conversation, locked)
            return None
        locked.controlled_by = owner
        locked.owner_changed_at = now
        locked.owner_changed_by = user
        locked.owner_reason = reason[:200]
        locked.agent_paused = owner != Owner.AGENT
        if owner != Owner.AGENT:
            locked.paused_at = now
            locked.paused_reason = reason[:200]
        locked.human_until = _human_deadline(now) if owner == Owner.HUMAN else None
        fields = [
            "controlled_by",
            "owner_changed_at",
            "owner_changed_by",
            "owner_reason",
            "agent_paused",
            "paused_at",
            "paused_reason",
            "human_until",
            "updated_at",
        ]
        if owner == Owner.CLOSED:
            locked.status = Conversation.Status.CLOSED
            locked.closed_at = now
            fields += ["status", "closed_at"]
        locked.save(update_fields=fields)
        change = OwnerChange.objects.create(
            conversation=locked,
            previous=previous,
            owner=owner,
            actor=user,
            actor_label=label[:150],
            reason=reason[:200],
        )
    _copy_owner(conversation, locked)
    return change


def _copy_owner(target: Conversation, source: Conversation) -> None:
    """Let the caller's instance see the new owner without a reload."""
    for name in (
        "controlled_by",
        "owner_changed_at",
        "owner_changed_by_id",
        "owner_reason",
        "agent_paused",
        "paused_at",
        "paused_reason",
        "human_until",
        "status",
        "closed_at",
    ):
        setattr(target, name, getattr(source, name))


def _default_reason(user: Any) -> str:
    return Handoff.Reason.SDR if user is not None else Handoff.Reason.OPS


# --- Human takeover expiry ---------------------------------------------------------------


def _human_deadline(now: datetime) -> datetime | None:
    minutes = settings.HUMAN_TAKEOVER_QUIET_MINUTES
    return now + timedelta(minutes=minutes) if minutes > 0 else None


def _extend_human(conversation: Conversation, *, now: datetime) -> None:
    deadline = _human_deadline(now)
    if deadline is not None:
        Conversation.objects.filter(pk=conversation.pk, controlled_by=Owner.HUMAN).update(
            human_until=deadline
        )
        conversation.human_until = deadline


def conversation_human_activity(*, conversation: Conversation) -> None:
    """A human wrote on the conversation: their takeover lasts another quiet period."""
    _extend_human(conversation, now=timezone.now())


def human_takeovers_expire(*, now: datetime | None = None) -> int:
    """Give back to the agent every human takeover quiet past its deadline. Returns how many."""
    now = now or timezone.now()
    expired = Conversation.objects.filter(
        controlled_by=Owner.HUMAN, human_until__isnull=False, human_until__lt=now
    ).order_by("human_until")
    count = 0
    for conversation in expired:
        change = conversation_set_owner(
            conversation=conversation,
            owner=Owner.AGENT,
            reason=gettext("No human message within the time limit: given back to the agent"),
            actor_label=gettext("expiry"),
        )
        count += change is not None
    return count


# --- Handoff lifecycle ---------------------------------------------------------------------


def _handoff_request(conversation: Conversation, *, reason: str, note: str) -> Handoff:
    """The active handoff of a (locked) conversation, opened if there is none."""
    existing = Handoff.objects.filter(conversation=conversation, status__in=ACTIVE_HANDOFF).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            handoff = Handoff.objects.create(
                conversation=conversation, reason=reason, note=note[:2000]
            )
    except IntegrityError:
        # uniq_active_handoff_per_conversation: opened meanwhile without the lock.
        return Handoff.objects.get(conversation=conversation, status__in=ACTIVE_HANDOFF)
    counter_inc("handoffs_total", {"reason": reason})
    _notify_after_commit(handoff.pk, "opened")
    return handoff


def _handoff_assign(handoff: Handoff, *, user: Any, now: datetime) -> None:
    if handoff.assigned_to_id == user.pk:
        return
    first_pickup = handoff.accepted_at is None
    handoff.assigned_to = user
    handoff.status = Handoff.Status.ACCEPTED
    if first_pickup:
        handoff.accepted_at = now
    handoff.save(update_fields=["assigned_to", "status", "accepted_at"])
    if first_pickup:
        histogram_observe("handoff_pickup_seconds", (now - handoff.created_at).total_seconds())
        _notify_after_commit(handoff.pk, "assigned")


def _handoff_resolve(conversation: Conversation, *, now: datetime, note: str) -> None:
    for handoff in Handoff.objects.filter(conversation=conversation, status__in=ACTIVE_HANDOFF):
        handoff.status = Handoff.Status.RESOLVED
        handoff.resolved_at = now
        if note and not handoff.note:
            handoff.note = note[:2000]
        handoff.save(update_fields=["status", "resolved_at", "note"])
        histogram_observe("handoff_resolution_seconds", (now - handoff.created_at).total_seconds())
        _notify_after_commit(handoff.pk, "resolved")
