"""Ingest of normalized provider events: leads, conversations, messages, chip health.

Every function here is idempotent, because a webhook event may be processed
more than once (a retried delivery that slipped past the event dedupe, the
sweep racing the task, an operator clicking "reprocess"). Races are settled by
the database constraints, inside savepoints, never by check-then-insert alone.

The agent is not called from here. New inbound messages the agent may answer
are announced through `AGENT_HOOKS` after commit: the seam the agent issue
plugs into.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from channels.providers.base import (
    ConnectionUpdate,
    Ignored,
    InboundEvent,
    InboundMessage,
    StatusUpdate,
)
from conversations.chatwoot_mirror import chatwoot_mirror_message
from conversations.models import Conversation, Handoff, Lead, LeadIdentity, Message
from conversations.ownership import ACTIVE_HANDOFF, conversation_set_owner

if TYPE_CHECKING:
    from channels.models import Chip, WebhookEvent

logger = logging.getLogger(__name__)

_RACE_RETRIES = 3
HUMAN_REPLIED_REASON = _("A human replied from the phone")

# --- The agent seam -------------------------------------------------------------------

# Callables taking the id of a new inbound Message that the agent may answer
# (conversation agent-controlled, not paused, lead not opted out). They run
# after the ingest transaction commits. The agent issue appends its entry
# point here; until then nothing answers.
AGENT_HOOKS: list[Callable[[int], None]] = []


def agent_dispatch(*, message_id: int) -> None:
    """Hand a new inbound message to whoever answers leads (see AGENT_HOOKS)."""
    for hook in AGENT_HOOKS:
        hook(message_id)


# --- Results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    """What one normalized event did; `handled` False means it changed nothing useful."""

    outcome: str
    handled: bool = True
    message_id: int | None = None
    detail: str = ""


def event_ingest(
    *, chip: Chip, event: InboundEvent, webhook_event: WebhookEvent | None = None
) -> IngestResult:
    """Apply one normalized event for `chip`; dispatches on the event's type."""
    if isinstance(event, InboundMessage):
        return inbound_message_ingest(chip=chip, message=event, webhook_event=webhook_event)
    if isinstance(event, StatusUpdate):
        return message_status_apply(chip=chip, update=event)
    if isinstance(event, ConnectionUpdate):
        return chip_connection_apply(chip=chip, update=event)
    if isinstance(event, Ignored):
        label = f"{event.event_type}: {event.reason}" if event.event_type else event.reason
        return IngestResult(outcome="ignored", handled=False, detail=label)
    raise TypeError(f"not a normalized event: {event!r}")


# --- Leads ------------------------------------------------------------------------------


class _Raced(Exception):
    """An address was claimed by a concurrent ingest while we resolved it."""


def lead_resolve(
    *, provider: str, phone: str | None, addresses: Iterable[str], name: str = ""
) -> Lead:
    """The one lead behind a phone and/or provider addresses, created if new.

    A lead first seen under an anonymous @lid and later under its phone (or
    with both at once) stays one lead: the addresses are kept as identities,
    and a phone-less @lid lead is merged into the lead that owns the phone.
    """
    addresses = [a for a in dict.fromkeys(addresses) if a]
    for attempt in range(_RACE_RETRIES):
        try:
            with transaction.atomic():
                return _lead_resolve_once(
                    provider=provider, phone=phone, addresses=addresses, name=name
                )
        except (IntegrityError, _Raced):
            # Someone else created the same lead or identity between our read
            # and our write; the next round finds theirs.
            if attempt == _RACE_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _lead_resolve_once(
    *, provider: str, phone: str | None, addresses: list[str], name: str
) -> Lead:
    identities = list(
        LeadIdentity.objects.select_related("lead").filter(
            provider=provider, external_id__in=addresses
        )
    )
    candidates: dict[int, Lead] = {identity.lead_id: identity.lead for identity in identities}
    phone_lead = Lead.objects.filter(phone=phone).first() if phone else None
    if phone_lead is not None:
        candidates[phone_lead.pk] = phone_lead

    if phone_lead is not None:
        lead: Lead | None = phone_lead
    else:
        # A lead known under another phone is another person (or a changed
        # number): only phone-less leads may take this phone.
        compatible = [c for c in candidates.values() if not phone or not c.phone]
        lead = min(compatible, key=lambda item: item.pk) if compatible else None
    if lead is None:
        lead = Lead.objects.create(phone=phone, name=name[:200], source="whatsapp")
    else:
        for other in candidates.values():
            if other.pk != lead.pk and not other.phone:
                _lead_merge(source=other, target=lead)
        updates = []
        if phone and not lead.phone:
            lead.phone = phone
            updates.append("phone")
        if name and not lead.name:
            lead.name = name[:200]
            updates.append("name")
        if updates:
            lead.save(update_fields=[*updates, "updated_at"])

    # Re-read: a merge above may have moved identities to `lead`.
    now = timezone.now()
    current = {
        identity.external_id: identity
        for identity in LeadIdentity.objects.filter(provider=provider, external_id__in=addresses)
    }
    for address in addresses:
        identity = current.get(address)
        if identity is None:
            # A plain insert: if a concurrent ingest just claimed this address,
            # the IntegrityError restarts the whole resolution (see lead_resolve),
            # which then finds its lead instead of creating a second one.
            LeadIdentity.objects.create(
                lead=lead, provider=provider, external_id=address, is_lid=address.endswith("@lid")
            )
        elif identity.lead_id == lead.pk or identity.lead_id in candidates:
            # Ours already, or (phone given) another phone's address now seen with this phone.
            LeadIdentity.objects.filter(pk=identity.pk).update(lead=lead, last_seen_at=now)
        else:
            # Claimed by a concurrent ingest after our first read: start over.
            raise _Raced(address)
    return lead


def _lead_merge(*, source: Lead, target: Lead) -> None:
    """Fold a duplicate lead (typically the phone-less @lid one) into `target`."""
    logger.info("merging lead %s into %s", source.pk, target.pk)
    LeadIdentity.objects.filter(lead=source).update(lead=target)
    for conversation in Conversation.objects.filter(lead=source).select_for_update():
        open_twin = (
            Conversation.objects.filter(
                lead=target, chip_id=conversation.chip_id, status=Conversation.Status.OPEN
            ).first()
            if conversation.status == Conversation.Status.OPEN
            else None
        )
        if open_twin is None:
            conversation.lead = target
            conversation.save(update_fields=["lead", "updated_at"])
            continue
        # Two open threads with the same person on the same chip: keep one.
        active = [Handoff.Status.OPEN, Handoff.Status.ACCEPTED]
        if open_twin.handoffs.filter(status__in=active).exists():
            conversation.handoffs.filter(status__in=active).update(
                status=Handoff.Status.RESOLVED, resolved_at=timezone.now()
            )
        conversation.messages.update(conversation=open_twin)
        conversation.handoffs.update(conversation=open_twin)
        conversation.delete()
    attributes = {**source.attributes, **target.attributes}
    if attributes != target.attributes or (source.name and not target.name):
        target.attributes = attributes
        target.name = target.name or source.name
        target.save(update_fields=["attributes", "name", "updated_at"])
    source.delete()


# --- Conversations ------------------------------------------------------------------------


def conversation_get_or_open(*, lead: Lead, chip: Chip) -> Conversation:
    """The lead's open conversation on this chip, opening one if there is none."""
    for attempt in range(_RACE_RETRIES):
        conversation = Conversation.objects.filter(
            lead=lead, chip=chip, status=Conversation.Status.OPEN
        ).first()
        if conversation is not None:
            return conversation
        try:
            with transaction.atomic():
                return Conversation.objects.create(
                    lead=lead, chip=chip, agent_profile=None, last_message_at=timezone.now()
                )
        except IntegrityError:
            # uniq_open_conversation_per_lead_chip: a concurrent ingest opened it.
            if attempt == _RACE_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


# --- Inbound messages -----------------------------------------------------------------------


def inbound_message_ingest(
    *, chip: Chip, message: InboundMessage, webhook_event: WebhookEvent | None = None
) -> IngestResult:
    """Store a message written on WhatsApp, once, and pause the agent if a human wrote it."""
    if message.from_me and _is_our_outbound(
        chip=chip, provider_message_id=message.provider_message_id
    ):
        return IngestResult(outcome="own_echo", handled=False, detail="echo of our own message")

    lead = lead_resolve(
        provider=chip.provider,
        phone=message.phone,
        addresses=[message.sender_id, *message.alt_sender_ids],
        name="" if message.from_me else message.sender_name,
    )
    conversation = conversation_get_or_open(lead=lead, chip=chip)
    if message.from_me:
        return _human_message_ingest(
            chip=chip, conversation=conversation, message=message, webhook_event=webhook_event
        )

    now = timezone.now()
    try:
        with transaction.atomic():
            stored = Message.objects.create(
                conversation=conversation,
                chip=chip,
                direction=Message.Direction.INBOUND,
                purpose=Message.Purpose.INBOUND,
                status=Message.Status.RECEIVED,
                **_message_fields(message),
                webhook_event=webhook_event,
                received_at=webhook_event.received_at if webhook_event is not None else now,
            )
    except IntegrityError:
        # uniq_inbound_message_per_chip: the provider sent this message id before.
        existing = Message.objects.get(
            chip=chip,
            direction=Message.Direction.INBOUND,
            provider_message_id=message.provider_message_id,
        )
        return IngestResult(outcome="duplicate", handled=True, message_id=existing.pk)

    Conversation.objects.filter(pk=conversation.pk).update(
        last_message_at=now, last_inbound_at=now, updated_at=now
    )
    chatwoot_mirror_message(message=stored)
    conversation.refresh_from_db(fields=["controlled_by", "agent_paused"])
    if (
        conversation.controlled_by == Conversation.ControlledBy.AGENT
        and not conversation.agent_paused
        and not lead.opted_out
    ):
        message_id = stored.pk
        transaction.on_commit(lambda: agent_dispatch(message_id=message_id))
    return IngestResult(outcome="stored", message_id=stored.pk)


def _is_our_outbound(*, chip: Chip, provider_message_id: str) -> bool:
    return Message.objects.filter(
        chip=chip,
        direction=Message.Direction.OUTBOUND,
        provider_message_id=provider_message_id,
    ).exists()


def _is_in_flight_echo(*, conversation: Conversation, text: str) -> bool:
    """Our own send echoed back before the outbox recorded its provider id.

    Evolution v2 echoes API sends as `messages.upsert` with `fromMe`; the echo
    can be processed while the sender still waits for the HTTP answer that
    carries the id. The message is then `sending` on this conversation with
    the same text: that is us, not a human on the phone.
    """
    if not text:
        return False
    return conversation.messages.filter(
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.SENDING,
        body=text,
    ).exists()


def _message_fields(message: InboundMessage) -> dict[str, object]:
    return {
        "kind": message.kind if message.kind in Message.Kind.values else Message.Kind.OTHER,
        "body": message.text,
        "media_id": message.media_id[:255],
        "media_url": message.media_url[:2000] if message.media_url.startswith("http") else "",
        "media_mime_type": message.media_mime_type[:100],
        "provider_message_id": message.provider_message_id[:255],
        "provider_timestamp": message.timestamp,
    }


def _human_message_ingest(
    *,
    chip: Chip,
    conversation: Conversation,
    message: InboundMessage,
    webhook_event: WebhookEvent | None,
) -> IngestResult:
    """The business wrote from the phone itself: keep it in the thread, pause the agent."""
    now = timezone.now()
    # Outbound rows have no unique constraint on the provider id (the outbox
    # sets it after sending), so serialize on the conversation instead.
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    existing = Message.objects.filter(
        chip=chip,
        direction=Message.Direction.OUTBOUND,
        provider_message_id=message.provider_message_id,
    ).first()
    if existing is not None:
        return IngestResult(outcome="duplicate", message_id=existing.pk)
    if _is_in_flight_echo(conversation=conversation, text=message.text):
        return IngestResult(outcome="own_echo", handled=False, detail="echo of a message in flight")
    stored = Message.objects.create(
        conversation=conversation,
        chip=chip,
        direction=Message.Direction.OUTBOUND,
        purpose=Message.Purpose.HUMAN,
        status=Message.Status.SENT,
        outcome=Message.Outcome.SENT,
        sent_at=message.timestamp or now,
        **_message_fields(message),
        webhook_event=webhook_event,
    )
    conversation_pause_for_human(conversation=conversation, reason=HUMAN_REPLIED_REASON)
    Conversation.objects.filter(pk=conversation.pk).update(
        last_message_at=now, last_outbound_at=now, updated_at=now
    )
    chatwoot_mirror_message(message=stored)
    return IngestResult(outcome="human_message", message_id=stored.pk)


def conversation_pause_for_human(*, conversation: Conversation, reason: str) -> Handoff:
    """A human wrote from the phone: they own the conversation, with a human-replied handoff."""
    conversation_set_owner(
        conversation=conversation,
        owner=Conversation.ControlledBy.HUMAN,
        reason=reason,
        actor_label="whatsapp",
        handoff_reason=Handoff.Reason.HUMAN_REPLIED,
        handoff_note=reason,
    )
    return Handoff.objects.get(conversation=conversation, status__in=ACTIVE_HANDOFF)


# --- Statuses of our outbound messages ---------------------------------------------------------

# Where a status sits in a message's life; a later webhook never moves it back.
_STATUS_RANK = {
    Message.Status.QUEUED: 0,
    Message.Status.SENDING: 1,
    Message.Status.SENT: 2,
    Message.Status.DELIVERED: 3,
    Message.Status.READ: 4,
}
_STATUS_TIMESTAMP = {
    Message.Status.SENT: "sent_at",
    Message.Status.DELIVERED: "delivered_at",
    Message.Status.READ: "read_at",
    Message.Status.FAILED: "failed_at",
}


def message_status_apply(*, chip: Chip, update: StatusUpdate) -> IngestResult:
    """Apply a provider status to the outbound message it names, never backwards."""
    message = (
        Message.objects.select_for_update()
        .filter(
            chip=chip,
            direction=Message.Direction.OUTBOUND,
            provider_message_id=update.provider_message_id,
        )
        .first()
    )
    if message is None:
        return IngestResult(
            outcome="status_unmatched",
            handled=False,
            detail=f"no outbound message {update.provider_message_id}",
        )
    new = Message.Status(update.status)
    when = update.timestamp or timezone.now()
    fields: list[str] = []
    timestamp_field = _STATUS_TIMESTAMP[new]
    if getattr(message, timestamp_field) is None:
        setattr(message, timestamp_field, when)
        fields.append(timestamp_field)

    current = message.status
    if new == Message.Status.FAILED:
        # A failure after delivery is noise; a failure before it is final.
        moves = _STATUS_RANK.get(current, 99) <= _STATUS_RANK[Message.Status.SENT]
    else:
        moves = current in _STATUS_RANK and _STATUS_RANK[new] > _STATUS_RANK[current]
    if moves:
        message.status = new
        fields.append("status")
        if new == Message.Status.FAILED:
            message.outcome = Message.Outcome.FAILED_PROVIDER
            message.last_error = ": ".join(p for p in (update.error_code, update.error) if p)
            fields += ["outcome", "last_error"]
    if fields:
        message.save(update_fields=[*fields, "updated_at"])
    outcome = f"status_{new}" if moves else "status_stale"
    return IngestResult(outcome=outcome, message_id=message.pk)


# --- Chip connection and health -------------------------------------------------------------------


def chip_connection_apply(*, chip: Chip, update: ConnectionUpdate) -> IngestResult:
    """Keep what the provider says about the number: status, QR code, quality, alerts."""
    from channels.models import Chip as ChipModel

    now = timezone.now()
    locked = ChipModel.objects.select_for_update().get(pk=chip.pk)
    fields: list[str] = []
    if update.status and update.status != locked.status:
        locked.status = update.status
        locked.status_changed_at = now
        fields += ["status", "status_changed_at"]
    if update.qr_code and update.qr_code != locked.qr_code:
        locked.qr_code = update.qr_code
        fields.append("qr_code")
    elif update.status == ChipModel.Status.CONNECTED and locked.qr_code:
        locked.qr_code = ""
        fields.append("qr_code")
    if update.quality_rating and update.quality_rating != locked.quality_rating:
        locked.quality_rating = update.quality_rating[:20]
        fields.append("quality_rating")
    signal = str(update.detail.get("event") or ("connection" if update.status else "health"))
    locked.health = {
        **(locked.health or {}),
        signal: {**update.detail, "status": update.status, "received_at": now.isoformat()},
    }
    fields.append("health")
    if update.status in (
        ChipModel.Status.DISCONNECTED,
        ChipModel.Status.RESTRICTED,
        ChipModel.Status.BANNED,
    ):
        locked.last_error = f"{update.status}: {dict(update.detail)}"[:2000]
        locked.last_error_at = now
        fields += ["last_error", "last_error_at"]
    locked.save(update_fields=[*fields, "updated_at"])
    return IngestResult(outcome=f"connection_{update.status or 'health'}")
