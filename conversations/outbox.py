"""The outbox: outbound messages wait as `queued` rows and leave through here.

One send is three short steps, so no database transaction is open while the
provider is on the line:

1. claim (`outbox_claim_batch`): lock a chip that may send now
   (`SELECT … FOR NO KEY UPDATE SKIP LOCKED`), then one due message of it
   (`FOR UPDATE SKIP LOCKED`), re-check that the message may still leave,
   mark it `sending` with a lease and mark the chip busy until the lease ends.
   A live message (reply, system, human) brings up to OUTBOX_REPLY_BATCH - 1
   more of other conversations, sent one after another by the same worker.
   Two workers can never hold the same chip or message, and a chip never has
   two sends in flight.
2. send through the chip's adapter (no locks held); after a failed send the
   rest of the batch goes back to the queue unattempted.
3. record (`outbox_record_result`): a `DeliveryAttempt` row, the message's
   new state, the circuit breaker, and the chip's pacing (`channels.pacing`):
   after a campaign or follow-up the next one waits the chip's interval,
   counted from when the answer came back; after a reply part the next part
   of that conversation waits a short typing-like gap.

Replies (and system or human messages) to one conversation leave in the order
they were queued: a part never overtakes an earlier one still waiting.

The database is the source of truth: a lost broker task loses nothing (the
periodic sweep drains again) and a message left `sending` by a dead worker
returns to the queue when its lease expires. Delivery is at-least-once only
in that one case: a worker killed after the provider accepted a message and
before it recorded the answer sends that message again after the lease.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Case, Exists, F, Min, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext

from channels import circuit, pacing, quarantine
from channels.http import provider_client
from channels.models import Chip
from channels.providers.base import ErrorKind, OutboundMedia, SendResult, get_adapter
from conversations.addressing import lead_address
from conversations.models import Conversation, DeliveryAttempt, Message
from core.alerts import alert_raise
from core.brokers import enqueue_nudge
from core.metrics import counter_inc, histogram_observe

logger = logging.getLogger(__name__)

# Replies to a lead who just wrote go before anything the business starts.
PRIORITY_BY_PURPOSE: dict[str, int] = {
    Message.Purpose.REPLY: 100,
    Message.Purpose.HUMAN: 100,
    Message.Purpose.SYSTEM: 50,
    Message.Purpose.FOLLOW_UP: 10,
    Message.Purpose.CAMPAIGN: 0,
}
NOT_SENDING_STATUSES = quarantine.NOT_SENDING_STATUSES
# How soon a drain looks again at a chip another worker is sending on.
IN_FLIGHT_POLL = timedelta(milliseconds=50)
# Provider answers that say nothing about the chip's health (the recipient's
# problem): they neither open nor close the circuit.
_RECIPIENT_ERRORS = frozenset({ErrorKind.INVALID_RECIPIENT})
_RETRYABLE = frozenset({ErrorKind.TRANSIENT, ErrorKind.RATE_LIMITED, ErrorKind.AUTH})


@dataclass(frozen=True)
class Verdict:
    """Why a message may not leave now: "cancel" it, or "hold" it (until `until`)."""

    action: str
    reason: str
    until: datetime | None = None


# Higher layers (campaigns) register their own checks and bookkeeping here, in
# their AppConfig.ready, so the outbox never imports them:
# - a gate sees a due message (its `campaign` loaded) right before it leaves;
# - a settled hook sees a message that just became sent, failed or cancelled,
#   inside the same transaction.
OutboxGate = Callable[[Message, datetime], Verdict | None]
OUTBOX_GATES: list[OutboxGate] = []
OUTBOX_SETTLED_HOOKS: list[Callable[[Message], None]] = []


@dataclass(frozen=True)
class Claim:
    # The message as the claim loaded it (its conversation, lead and chip):
    # the send does not read it again.
    message: Message = field(compare=False, repr=False)
    chip_id: int
    attempt: int
    probe: bool
    lease_expires_at: datetime
    purpose: str = Message.Purpose.REPLY
    # More of the same claim follow on this chip: recording this one keeps the
    # chip busy for them instead of freeing it.
    more_follow: bool = False
    # The chip's circuit was closed with no failure counted when claimed: a
    # success changes nothing on it (see `_record_success_clean`).
    circuit_clean: bool = False
    # When the lead's message this part answers first arrived: the lead's
    # wait ends when it is accepted (agent_response_seconds). Read by the
    # claim, when no earlier part of the answer may still leave.
    lead_waiting_since: datetime | None = None

    @property
    def message_id(self) -> int:
        return self.message.pk


@dataclass
class DrainReport:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    recovered: int = 0
    attempts: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {
            "attempts": self.attempts,
            "sent": self.sent,
            "failed": self.failed,
            "retried": self.retried,
            "recovered": self.recovered,
        }


# --- Enqueueing -------------------------------------------------------------------------


def outbox_enqueue(
    *,
    conversation: Conversation,
    body: str,
    purpose: str,
    priority: int | None = None,
    campaign: object | None = None,
    reply_to: Message | None = None,
    sent_by: object | None = None,
    not_before: datetime | None = None,
) -> Message:
    """Queue a text message on the conversation's chip; a sender runs after commit.

    With `not_before` ahead, no sender is asked now: it would find nothing
    due. Whoever set the time brings it forward (agent.held_turn), or the
    periodic sweep sends it.
    """
    now = timezone.now()
    message = Message.objects.create(
        conversation=conversation,
        chip_id=conversation.chip_id,
        direction=Message.Direction.OUTBOUND,
        purpose=purpose,
        kind=Message.Kind.TEXT,
        body=body,
        status=Message.Status.QUEUED,
        priority=PRIORITY_BY_PURPOSE.get(purpose, 0) if priority is None else priority,
        campaign=campaign,
        reply_to=reply_to,
        sent_by=sent_by,
        next_attempt_at=not_before or now,
    )
    if not_before is None or not_before <= now:
        outbox_kick(chip_id=conversation.chip_id)
    return message


def outbox_kick(*, chip_id: int | None = None) -> None:
    """Ask a worker to send what is due, once the current transaction commits.

    Only a nudge: the periodic sweep sends everything anyway, so a broker that
    drops this task delays messages by at most one sweep.

    With `chip_id`, no worker is asked while that chip is held (see
    `_chip_held`): under a burst of replies on one chip, one kick per reply
    used to cost the sending cluster as much as the sends, for kicks that
    found nothing left to claim.
    """

    def nudge() -> None:
        if chip_id is not None and _chip_held(chip_id):
            return
        enqueue_nudge(
            "conversations.tasks.outbox_send_now",
            group="outbox",
            save=False,
            failure="outbox: could not enqueue the sender task",
        )

    transaction.on_commit(nudge)


def _chip_held(chip_id: int) -> bool:
    """The chip's next send is ahead: a kick now would claim nothing on it.

    Either a worker holds it for a batch (`next_send_at` is its lease's end),
    and that worker claims again once the batch is recorded, finding what
    committed meanwhile; or the provider asked us to wait (a 429), and the
    sweep sends when the wait is over. Checked after our commit, so a chip
    freed before the check gets its kick. A failed check kicks anyway.
    """
    try:
        return Chip.objects.filter(pk=chip_id, next_send_at__gt=timezone.now()).exists()
    except DatabaseError:
        return False


# --- Claiming -----------------------------------------------------------------------------


def _due(now: datetime) -> Q:
    return Q(status=Message.Status.QUEUED) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )


def _reply_ceiling_reached(now: datetime) -> Q:
    return Q(reply_window_count__gte=settings.OUTBOX_REPLY_MAX_PER_MINUTE) & Q(
        reply_window_started_at__gt=now - pacing.REPLY_WINDOW
    )


def _proactive_ready(now: datetime) -> Q:
    return Q(next_proactive_at__isnull=True) | Q(next_proactive_at__lte=now)


def _chips_with_due(now: datetime) -> QuerySet[Chip]:
    """Chips annotated with whether live (reply) and proactive messages are due."""
    due = Message.objects.filter(_due(now), chip=OuterRef("pk"))
    return Chip.objects.annotate(
        live_due=Exists(due.filter(purpose__in=pacing.LIVE_PURPOSES)),
        proactive_due=Exists(due.filter(purpose__in=pacing.PROACTIVE_PURPOSES)),
    )


def _lock_ready_chip(*, now: datetime, skip: set[int]) -> Chip | None:
    # The chip whose most urgent due message matters most: a reply to a lead
    # who just wrote is not kept waiting behind other chips' campaigns. The
    # conditions go in WHERE, not in annotations: every claim and every kick
    # builds this query, and compiling annotations filtered on again cost
    # about as much Python as the rest of a send.
    due = Message.objects.filter(_due(now), chip=OuterRef("pk"))
    top_priority = due.order_by("-priority").values("priority")[:1]
    return (
        Chip.objects.filter(
            (Exists(due.filter(purpose__in=pacing.LIVE_PURPOSES)) & ~_reply_ceiling_reached(now))
            | (Exists(due.filter(purpose__in=pacing.PROACTIVE_PURPOSES)) & _proactive_ready(now)),
            Q(next_send_at__isnull=True) | Q(next_send_at__lte=now),
            Q(circuit_state=Chip.CircuitState.CLOSED)
            | Q(circuit_retry_at__isnull=True)
            | Q(circuit_retry_at__lte=now),
        )
        .exclude(status__in=NOT_SENDING_STATUSES)
        .exclude(pk__in=skip)
        .select_for_update(skip_locked=True, no_key=True, of=("self",))
        .order_by(Subquery(top_priority).desc(), F("next_send_at").asc(nulls_first=True), "pk")
        .first()
    )


def _hold(messages: QuerySet[Message], *, until: datetime, reason: str) -> int:
    return messages.update(next_attempt_at=until, last_error=reason, updated_at=timezone.now())


def _gate_proactive(chip: Chip, *, now: datetime) -> set[str]:
    """Move business-initiated messages this chip may not send now out of the due set.

    Returns the purposes held: none of their messages may leave in this claim.
    """
    due = Message.objects.filter(_due(now), chip=chip)
    block = pacing.chip_proactive_block(chip, now=now)
    if block is not None:
        _hold(
            due.filter(purpose__in=pacing.PROACTIVE_PURPOSES),
            until=block.until,
            reason=block.reason,
        )
        return set(pacing.PROACTIVE_PURPOSES)
    held = set()
    hold_until = now + timedelta(seconds=settings.OUTBOX_HOLD_SECONDS)
    for purpose in pacing.PROACTIVE_PURPOSES:
        reason = pacing.chip_purpose_block(chip, purpose=purpose)
        if reason:
            _hold(due.filter(purpose=purpose), until=hold_until, reason=reason)
            held.add(purpose)
    return held


def _may_leave(message: Message, *, now: datetime) -> Verdict | None:
    """A verdict when the message must not leave now."""
    conversation = message.conversation
    if message.purpose == Message.Purpose.REPLY:
        if conversation.controlled_by == Conversation.ControlledBy.HUMAN:
            return Verdict("cancel", gettext("Conversation taken over by a human before sending"))
        if conversation.agent_paused:
            return Verdict("cancel", gettext("Agent paused in this conversation before sending"))
    if message.purpose in pacing.PROACTIVE_PURPOSES:
        if conversation.lead.opted_out:
            return Verdict("cancel", gettext("Lead asked not to receive messages (opt-out)"))
        for gate in OUTBOX_GATES:
            verdict = gate(message, now)
            if verdict is not None:
                return verdict
        if conversation.controlled_by == Conversation.ControlledBy.HUMAN:
            return Verdict(
                "hold", gettext("Conversation with a human: automatic sending suspended")
            )
    return None


def _cancel(message: Message, *, reason: str, now: datetime) -> None:
    message.status = Message.Status.CANCELLED
    message.outcome = Message.Outcome.CANCELLED
    message.last_error = reason
    message.lease_expires_at = None
    message.save(
        update_fields=["status", "outcome", "last_error", "lease_expires_at", "updated_at"]
    )
    _settled(message)
    counter_inc("outbound_messages_total", {"outcome": "cancelled"})


def _unsent_live_parts() -> QuerySet[Message]:
    """Reply, system and human messages that have not left: later parts wait for these."""
    return Message.objects.filter(
        direction=Message.Direction.OUTBOUND,
        purpose__in=pacing.LIVE_PURPOSES,
        status__in=[Message.Status.QUEUED, Message.Status.SENDING],
    )


def _first_unsent_live_parts(conversation_ids: set[int]) -> dict[int, int]:
    """The first live part of each conversation that has not left, by conversation (one read)."""
    if not conversation_ids:
        return {}
    firsts: dict[int, int] = {}
    for conversation_id, pk in (
        _unsent_live_parts()
        .filter(conversation_id__in=conversation_ids)
        .values_list("conversation_id", "pk")
    ):
        firsts[conversation_id] = min(pk, firsts.get(conversation_id, pk))
    return firsts


def _earlier_live_part(message: Message) -> Message | None:
    """An earlier reply, system or human message of the conversation that has not left."""
    return (
        _unsent_live_parts()
        .filter(conversation_id=message.conversation_id, pk__lt=message.pk)
        .order_by("pk")
        .only("pk", "next_attempt_at", "lease_expires_at")
        .first()
    )


def _candidates(chip: Chip, *, now: datetime) -> QuerySet[Message]:
    """The chip's due messages in sending order, locked, each with what its send needs.

    `asked_at` and `answered` (for a reply: when the lead's message arrived,
    and whether another part already answered it) end the lead's wait when
    this part is accepted, without a read per send.
    """
    answered = Message.objects.filter(reply_to_id=OuterRef("reply_to_id"), sent_at__isnull=False)
    candidates = (
        Message.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("conversation__lead", "campaign")
        .filter(_due(now), chip=chip, direction=Message.Direction.OUTBOUND)
        .annotate(
            asked_at=Coalesce("reply_to__received_at", "reply_to__created_at"),
            answered=Exists(answered),
        )
        # The order of outbox_chip_due_idx (NULLS FIRST would not match it,
        # and SQLite cannot index it); outbox_enqueue always sets the time.
        .order_by("-priority", "next_attempt_at", "pk")
    )
    if pacing.chip_reply_ready_at(chip, now=now) is not None:
        candidates = candidates.exclude(purpose__in=pacing.LIVE_PURPOSES)
    if chip.next_proactive_at is not None and chip.next_proactive_at > now:
        candidates = candidates.exclude(purpose__in=pacing.PROACTIVE_PURPOSES)
    return candidates


def _claim_on_chip(chip: Chip, *, now: datetime, limit: int = 1) -> list[Claim]:
    """Claim what may leave on this (locked) chip now: one message, or a batch of live ones.

    A reply, system or human message may bring up to `limit - 1` more, of
    other conversations, sent one after another by the same worker: a chip
    answering a hundred leads at once pays the chip's lock and the due
    query once per batch instead of once per reply. Business-initiated
    messages keep their interval, and a circuit probe stays alone.

    The chip's business-initiated messages are gated (`_gate_proactive`) only
    when one of them would be claimed: a claim of replies alone does not
    count the chip's sends of the day.
    """
    lease_seconds = settings.OUTBOX_LEASE_SECONDS
    lease_expires_at = now + timedelta(seconds=lease_seconds)
    owner = lease_owner()
    claimed: list[tuple[Message, bool]] = []
    conversations: set[int] = set()
    chip_fields = ["next_send_at", "circuit_state", "circuit_retry_at", "updated_at"]
    candidates = list(_candidates(chip, now=now)[: max(20, limit)])
    firsts = _first_unsent_live_parts(
        {m.conversation_id for m in candidates if m.purpose in pacing.LIVE_PURPOSES}
    )
    gated: set[str] | None = None
    for message in candidates:
        live = message.purpose in pacing.LIVE_PURPOSES
        if claimed:
            if not live:
                break  # a batch holds live messages only
            if message.conversation_id in conversations:
                continue  # its earlier part is in this batch: the typing gap comes first
            if pacing.chip_reply_ready_at(chip, now=now) is not None:
                break  # the reply ceiling is reached with this batch
        if not live:
            if gated is None:
                gated = _gate_proactive(chip, now=now)
            if message.purpose in gated:
                continue  # held by the gate, with the rest of its purpose
        # Read again only when an earlier part had not left when the batch was
        # read: it may have been cancelled since, by this very loop.
        earlier = (
            _earlier_live_part(message)
            if live and firsts.get(message.conversation_id, message.pk) < message.pk
            else None
        )
        if earlier is not None:
            # Never overtake an earlier part (one in retry backoff, say): wait for it.
            until = max(filter(None, [earlier.next_attempt_at, earlier.lease_expires_at, now]))
            _hold(
                Message.objects.filter(pk=message.pk),
                until=until + pacing.reply_part_gap(message.body),
                reason="Aguardando a mensagem anterior desta conversa sair",
            )
            continue
        verdict = _may_leave(message, now=now)
        if verdict is not None:
            if verdict.action == "cancel":
                _cancel(message, reason=verdict.reason, now=now)
            else:
                _hold(
                    Message.objects.filter(pk=message.pk),
                    until=verdict.until or now + timedelta(seconds=settings.OUTBOX_HOLD_SECONDS),
                    reason=verdict.reason,
                )
                counter_inc("outbound_messages_total", {"outcome": "held"})
            continue
        probe = (
            circuit.circuit_begin_send(chip, now=now, probe_lease_seconds=lease_seconds)
            if not claimed
            else False
        )
        message.status = Message.Status.SENDING
        message.attempts += 1
        message.lease_expires_at = lease_expires_at
        message.lease_owner = owner
        message.chip = chip
        if live:
            chip_fields += pacing.chip_reply_count(chip, now=now)
        claimed.append((message, probe))
        conversations.add(message.conversation_id)
        if len(claimed) >= limit or probe or not live:
            break  # a business message or a circuit probe leaves alone
    if not claimed:
        return []
    # One statement for the batch; each row is locked by this claim.
    Message.objects.filter(pk__in=[message.pk for message, _ in claimed]).update(
        status=Message.Status.SENDING,
        attempts=F("attempts") + 1,
        lease_expires_at=lease_expires_at,
        lease_owner=owner,
        updated_at=timezone.now(),
    )
    # Busy until the last answer is recorded (or the lease ends, if this worker dies).
    chip.next_send_at = lease_expires_at
    chip.save(update_fields=list(dict.fromkeys(chip_fields)))
    circuit_clean = chip.circuit_state == Chip.CircuitState.CLOSED and not chip.consecutive_failures
    return [
        Claim(
            message=message,
            chip_id=chip.pk,
            attempt=message.attempts,
            probe=probe,
            lease_expires_at=lease_expires_at,
            purpose=message.purpose,
            more_follow=index < len(claimed) - 1,
            circuit_clean=circuit_clean,
            lead_waiting_since=(
                message.asked_at if message.reply_to_id and not message.answered else None
            ),
        )
        for index, (message, probe) in enumerate(claimed)
    ]


def outbox_claim_next(*, now: datetime | None = None) -> Claim | None:
    """Claim the next message that may leave now, on any chip; None when there is none."""
    claims = outbox_claim_batch(now=now, limit=1)
    return claims[0] if claims else None


def outbox_claim_batch(*, now: datetime | None = None, limit: int | None = None) -> list[Claim]:
    """Claim what may leave now on the most urgent ready chip; empty when nothing may.

    Up to `limit` (OUTBOX_REPLY_BATCH) live messages of one chip, to be sent
    in order by the caller (see `_claim_on_chip`); one message otherwise.
    """
    limit = settings.OUTBOX_REPLY_BATCH if limit is None else limit
    tried: set[int] = set()
    while True:
        now = now or timezone.now()
        with transaction.atomic():
            chip = _lock_ready_chip(now=now, skip=tried)
            if chip is None:
                return []
            claims = _claim_on_chip(chip, now=now, limit=limit)
        if claims:
            return claims
        # Everything due on that chip was held, cancelled or locked by someone
        # else; look at the other chips.
        tried.add(chip.pk)


def _lease_covers_a_send(claim: Claim) -> bool:
    """Whether a send started now ends, at its slowest, before the claim's lease."""
    slowest = settings.OUTBOX_HTTP_TIMEOUT_SECONDS + settings.OUTBOX_HTTP_CONNECT_TIMEOUT_SECONDS
    return timezone.now() + timedelta(seconds=slowest) < claim.lease_expires_at


def outbox_release_claims(claims: list[Claim]) -> int:
    """Put claimed messages that were never handed to the provider back in the queue.

    The rest of a batch after a failed send: the chip's trouble is recorded
    first, and these wait for the next claim as if never claimed (their
    attempt is not counted), so a failing chip burns nothing.
    """
    if not claims:
        return 0
    now = timezone.now()
    # The chip was kept busy for these until the batch's lease end: free it
    # (unless a failure recorded its own wait since).
    Chip.objects.filter(pk=claims[0].chip_id, next_send_at=claims[0].lease_expires_at).update(
        next_send_at=now
    )
    released = 0
    for claim in claims:
        released += Message.objects.filter(
            pk=claim.message_id,
            status=Message.Status.SENDING,
            attempts=claim.attempt,
            lease_owner=lease_owner(),
        ).update(
            status=Message.Status.QUEUED,
            attempts=F("attempts") - 1,
            lease_expires_at=None,
            lease_owner="",
            updated_at=now,
        )
    return released


# --- Sending and recording ----------------------------------------------------------------


def outbox_send_claimed(*, claim: Claim, client: httpx.Client) -> SendResult:
    """Hand a claimed message to its chip's provider and record what happened."""
    message = claim.message
    chip = message.chip
    started_at = timezone.now()
    started = time.monotonic()
    to = lead_address(message)
    if not to:
        result = SendResult.failed(
            ErrorKind.INVALID_RECIPIENT, gettext("Lead without a phone or a provider identifier")
        )
    else:
        try:
            adapter = get_adapter(chip.provider)
            if message.kind != Message.Kind.TEXT and message.media_url:
                media = OutboundMedia(
                    kind=message.kind,
                    url=message.media_url,
                    caption=message.body,
                    mime_type=message.media_mime_type,
                )
                result = adapter.send_media(chip, to=to, media=media, client=client)
            else:
                result = adapter.send_text(chip, to=to, text=message.body, client=client)
        except Exception as exc:
            # An adapter bug must not leave the message `sending` until its lease ends.
            logger.exception(
                "outbox: adapter %s raised while sending %s", chip.provider, message.pk
            )
            result = SendResult.failed(ErrorKind.TRANSIENT, f"{type(exc).__name__}: {exc}")
    duration_ms = int((time.monotonic() - started) * 1000)
    if (
        result.ok
        and claim.circuit_clean
        and (claim.more_follow or claim.purpose in pacing.LIVE_PURPOSES)
    ):
        _record_success_clean(
            claim=claim,
            message=message,
            result=result,
            started_at=started_at,
            duration_ms=duration_ms,
        )
    else:
        outbox_record_result(
            claim=claim, result=result, started_at=started_at, duration_ms=duration_ms
        )
    return result


def _retry_delay(*, attempt: int, result: SendResult) -> float:
    backoff = settings.OUTBOX_RETRY_BASE_SECONDS * (2 ** max(0, min(attempt - 1, 20)))
    backoff = min(backoff, settings.OUTBOX_RETRY_MAX_SECONDS)
    return max(backoff, result.retry_after or 0.0)


def _settled(message: Message) -> None:
    for hook in OUTBOX_SETTLED_HOOKS:
        hook(message)


def outbox_record_result(
    *,
    claim: Claim,
    result: SendResult,
    started_at: datetime,
    duration_ms: int,
) -> None:
    """Store one attempt's outcome: message state, retry, circuit, pacing, quarantine."""
    now = timezone.now()
    kind = result.error_kind
    with transaction.atomic():
        chip = Chip.objects.select_for_update(no_key=True).get(pk=claim.chip_id)
        _attempt_record(claim=claim, result=result, started_at=started_at, duration_ms=duration_ms)
        message = (
            Message.objects.select_for_update(of=("self",))
            .select_related("conversation")
            .filter(pk=claim.message_id, status=Message.Status.SENDING, attempts=claim.attempt)
            .first()
        )
        if message is None:
            # The lease ran out and another worker took the message over; its
            # own record decides the message. Keep the attempt row for the ops.
            logger.warning("outbox: message %s lost its lease while sending", claim.message_id)

        chip_fields = ["next_send_at", "updated_at"]
        next_send_at = now
        if claim.purpose in pacing.PROACTIVE_PURPOSES:
            next_proactive_at = pacing.chip_next_proactive_at(chip, after=now)
            if chip.next_proactive_at is None or chip.next_proactive_at < next_proactive_at:
                chip.next_proactive_at = next_proactive_at
                chip_fields.append("next_proactive_at")
        if result.ok:
            circuit.circuit_record_success(chip)
            chip.last_sent_at = started_at
            chip_fields += ["last_sent_at", "circuit_state", "consecutive_failures"]
            chip_fields += ["circuit_retry_at"]
            if message is not None:
                _record_sent(message, result=result, now=now, claim=claim)
        else:
            error = _describe(result)
            chip.last_error = error
            chip.last_error_at = now
            chip_fields += ["last_error", "last_error_at"]
            # A 429 that says how long to wait is the provider pacing us, not
            # a failing chip: wait what it asks, leave the breaker alone.
            polite = kind == ErrorKind.RATE_LIMITED and bool(result.retry_after)
            if kind not in _RECIPIENT_ERRORS and not polite:
                change = circuit.circuit_record_failure(chip, now=now)
                chip_fields += [
                    "consecutive_failures",
                    "circuit_state",
                    "circuit_opened_at",
                    "circuit_retry_at",
                    "circuit_open_count",
                ]
                if change.opened:
                    _alert_after_commit(
                        title=gettext("Circuit breaker open: chip %(chip)s") % {"chip": chip.name},
                        text=gettext(
                            "%(failures)d failures in a row; next attempt %(retry_at)s. "
                            "Last error: %(error)s"
                        )
                        % {
                            "failures": chip.consecutive_failures,
                            "retry_at": f"{timezone.localtime(change.retry_at):%d/%m %H:%M:%S}",
                            "error": error,
                        },
                    )
            if kind == ErrorKind.RATE_LIMITED and result.retry_after:
                next_send_at = max(next_send_at, now + timedelta(seconds=result.retry_after))
            if message is not None:
                _record_failure(message, result=result, error=error, now=now)
            # After the message is back in the queue, so the quarantine hooks
            # (campaigns moving a chip's unsent messages) see it too.
            if kind == ErrorKind.RESTRICTED:
                chip_fields += _quarantine(chip, error=error, now=now)
        # Keep the chip's hold while the rest of this worker's batch follows, or
        # while another worker holds it for its own send (our lease ran out).
        batch_goes_on = claim.more_follow and result.ok
        held_by_another = message is None and chip.next_send_at and chip.next_send_at > next_send_at
        if not (batch_goes_on or held_by_another):
            chip.next_send_at = next_send_at
        chip.save(update_fields=sorted(set(chip_fields)))
        # Last, so the shared counter row stays locked only until the commit.
        counter_inc(
            "integration_requests_total",
            {
                "integration": chip.provider,
                "operation": "send_text",
                "outcome": "ok" if result.ok else str(kind),
            },
        )


def _attempt_record(
    *, claim: Claim, result: SendResult, started_at: datetime, duration_ms: int
) -> None:
    """One row per attempt, whatever its outcome: what the ops read of a message's sends."""
    DeliveryAttempt.objects.create(
        message_id=claim.message_id,
        chip_id=claim.chip_id,
        started_at=started_at,
        duration_ms=duration_ms,
        outcome=DeliveryAttempt.Outcome.SENT if result.ok else str(result.error_kind),
        http_status=result.http_status,
        error_code=result.error_code[:50],
        error=result.error,
        provider_message_id=result.provider_message_id[:255],
    )


def _record_success_clean(
    *,
    claim: Claim,
    message: Message,
    result: SendResult,
    started_at: datetime,
    duration_ms: int,
) -> None:
    """`outbox_record_result` for a success on a clean circuit, without locking the chip.

    The chip's circuit was clean when claimed (closed, no failure counted),
    and the chip has been held by this claim since: a success changes
    nothing on its circuit. In the middle of a batch the chip is not written
    at all (the batch's last answer records the time of the last send);
    after a batch's last reply, one conditional update frees it, unless
    another worker holds it (this claim's lease ran out). A business message
    keeps the full record, which spaces the chip's next one. The message is
    marked sent by one conditional update. Four statements fewer per reply
    when a chip answers many leads at once, where the sends of one chip are
    the one thing that cannot spread over the cores.
    """
    now = timezone.now()
    with transaction.atomic():
        _attempt_record(claim=claim, result=result, started_at=started_at, duration_ms=duration_ms)
        sent = _sent_fields(result, now=now)
        marked = Message.objects.filter(
            pk=claim.message_id, status=Message.Status.SENDING, attempts=claim.attempt
        ).update(**sent, updated_at=now)
        if marked:
            for name, value in sent.items():
                setattr(message, name, value)
            _after_sent(message, now=now, claim=claim)
        else:
            # As in `outbox_record_result`: the lease ran out, another worker's record decides.
            logger.warning("outbox: message %s lost its lease while sending", claim.message_id)
        if not claim.more_follow:
            Chip.objects.filter(pk=claim.chip_id).update(
                last_sent_at=started_at,
                next_send_at=Case(
                    When(next_send_at=claim.lease_expires_at, then=Value(now)),
                    default=F("next_send_at"),
                ),
                updated_at=now,
            )
        counter_inc(
            "integration_requests_total",
            {"integration": message.chip.provider, "operation": "send_text", "outcome": "ok"},
        )


def _describe(result: SendResult) -> str:
    parts = [str(result.error_kind)]
    if result.http_status:
        parts.append(f"HTTP {result.http_status}")
    if result.error_code:
        parts.append(f"code {result.error_code}")
    return f"{' / '.join(parts)}: {result.error}"[:2000]


def _sent_fields(result: SendResult, *, now: datetime) -> dict[str, Any]:
    return {
        "status": Message.Status.SENT,
        "outcome": Message.Outcome.SENT,
        "provider_message_id": result.provider_message_id,
        "sent_at": now,
        "lease_expires_at": None,
        "next_attempt_at": None,
        "last_error": "",
    }


def _record_sent(message: Message, *, result: SendResult, now: datetime, claim: Claim) -> None:
    sent = _sent_fields(result, now=now)
    for name, value in sent.items():
        setattr(message, name, value)
    message.save(update_fields=[*sent, "updated_at"])
    _after_sent(message, now=now, claim=claim)


def _after_sent(message: Message, *, now: datetime, claim: Claim) -> None:
    """What a message accepted by the provider changes besides its own row."""
    Conversation.objects.filter(pk=message.conversation_id).update(
        last_outbound_at=now, last_message_at=now
    )
    if message.purpose in pacing.LIVE_PURPOSES:
        _space_next_part(message, now=now)
        if claim.lead_waiting_since is not None:
            # The first part of the turn's answer was accepted: the lead's wait is
            # over, counted from when their message reached us (intake included).
            waited = (now - claim.lead_waiting_since).total_seconds()
            histogram_observe("agent_response_seconds", waited)
            histogram_observe(
                "outbox_reply_wait_seconds", (now - message.created_at).total_seconds()
            )
    _settled(message)
    counter_inc("outbound_messages_total", {"outcome": "sent"})


def _space_next_part(message: Message, *, now: datetime) -> None:
    """The conversation's next queued part waits as long as a person would take to type it."""
    following = (
        Message.objects.filter(
            conversation_id=message.conversation_id,
            direction=Message.Direction.OUTBOUND,
            purpose__in=pacing.LIVE_PURPOSES,
            status=Message.Status.QUEUED,
            pk__gt=message.pk,
        )
        .order_by("pk")
        .only("pk", "body", "next_attempt_at", "attempts")
        .first()
    )
    if following is None:
        return
    due = now + pacing.reply_part_gap(following.body)
    # A part never tried was only waiting for this one; one in retry keeps its backoff.
    if following.attempts == 0 or following.next_attempt_at < due:
        Message.objects.filter(pk=following.pk).update(next_attempt_at=due, updated_at=now)


def _record_failure(message: Message, *, result: SendResult, error: str, now: datetime) -> None:
    kind = result.error_kind
    message.last_error = error
    message.lease_expires_at = None
    if kind == ErrorKind.RESTRICTED:
        # The number was blocked, not the message: it waits for the chip to be
        # released (or for ops to cancel it) instead of being burned.
        message.status = Message.Status.QUEUED
        message.outcome = Message.Outcome.FAILED_PROVIDER
        message.next_attempt_at = now + timedelta(seconds=_retry_delay(attempt=1, result=result))
        metric = "retry"
    elif kind in _RETRYABLE and message.attempts < settings.OUTBOX_MAX_ATTEMPTS:
        message.status = Message.Status.QUEUED
        message.outcome = Message.Outcome.FAILED_PROVIDER
        delay = _retry_delay(attempt=message.attempts, result=result)
        message.next_attempt_at = now + timedelta(seconds=delay)
        metric = "retry"
    else:
        message.status = Message.Status.FAILED
        message.failed_at = now
        message.next_attempt_at = None
        message.outcome = (
            Message.Outcome.FAILED_PROVIDER
            if kind in _RETRYABLE
            else Message.Outcome.FAILED_PERMANENT
        )
        metric = message.outcome
    message.save(
        update_fields=[
            "status",
            "outcome",
            "last_error",
            "lease_expires_at",
            "next_attempt_at",
            "failed_at",
            "updated_at",
        ]
    )
    _settled(message)
    counter_inc("outbound_messages_total", {"outcome": metric})


def _alert_after_commit(*, title: str, text: str) -> None:
    transaction.on_commit(lambda: alert_raise(title=title, text=text))


# --- Quarantine ------------------------------------------------------------------------------


def _quarantine(chip: Chip, *, error: str, now: datetime) -> list[str]:
    """The provider says the number is restricted: stop everything it starts. Chip is locked."""
    first_time, paused = quarantine.chip_quarantine(chip, error=error, now=now)
    if first_time:
        names = ", ".join(paused) or gettext("none")
        _alert_after_commit(
            title=gettext("Chip restricted: %(chip)s (%(number)s)")
            % {"chip": chip.name, "number": chip.phone or chip.instance_id},
            text=gettext(
                "The provider restricted the number: %(error)s. Chip quarantined "
                "(no prospecting or follow-up). Paused campaigns: %(campaigns)s."
            )
            % {"error": error, "campaigns": names},
        )
    return list(quarantine.QUARANTINE_FIELDS)


# --- Recovery and the drain loop ----------------------------------------------------------


def lease_owner() -> str:
    """Who holds a lease taken now: this host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _dead_local_owners(owners: set[str]) -> list[str]:
    """The lease owners on this host whose process is gone (a worker killed mid-send).

    Another host's workers cannot be checked from here: their leases end when
    they expire. A pid reused by another process only delays recovery to the
    same expiry.
    """
    prefix = f"{socket.gethostname()}:"
    dead = []
    for owner in owners:
        if not owner.startswith(prefix):
            continue
        pid = owner.removeprefix(prefix)
        if pid.isdigit() and not _process_exists(int(pid)):
            dead.append(owner)
    return dead


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def outbox_recover_expired_leases(*, now: datetime | None = None) -> int:
    """Return messages left `sending` by a dead worker to the queue (or fail poison ones).

    A lease is over when it expires, or at once when its worker ran on this
    host and its process is gone: a crashed worker no longer blocks its chip
    for the whole lease.
    """
    now = now or timezone.now()
    sending = Message.objects.filter(status=Message.Status.SENDING)
    # One read of the few leases in flight decides whether anything is lost:
    # every kick runs this, and it almost never finds anything.
    leases = set(sending.values_list("lease_owner", "lease_expires_at").distinct())
    dead_owners = _dead_local_owners({owner for owner, _ in leases})
    if not dead_owners and not any(ends is not None and ends < now for _, ends in leases):
        return 0
    lost = Q(lease_expires_at__lt=now)
    if dead_owners:
        lost |= Q(lease_owner__in=dead_owners)
        # The claim held the chip until the lease's end; free it now.
        for chip_id, expires_at in sending.filter(lease_owner__in=dead_owners).values_list(
            "chip_id", "lease_expires_at"
        ):
            Chip.objects.filter(pk=chip_id, next_send_at=expires_at).update(next_send_at=now)
    expired = sending.filter(lost)
    failed = expired.filter(attempts__gte=settings.OUTBOX_MAX_ATTEMPTS).update(
        status=Message.Status.FAILED,
        outcome=Message.Outcome.FAILED_PROVIDER,
        failed_at=now,
        lease_expires_at=None,
        lease_owner="",
        last_error=gettext("Send interrupted several times (the worker stopped while sending)"),
        updated_at=now,
    )
    requeued = expired.update(
        status=Message.Status.QUEUED,
        lease_expires_at=None,
        lease_owner="",
        next_attempt_at=now,
        last_error=gettext(
            "Send interrupted (the worker stopped); the message went back to the queue"
        ),
        updated_at=now,
    )
    if failed or requeued:
        logger.warning("outbox: %s expired leases requeued, %s failed", requeued, failed)
        if failed:
            counter_inc("outbound_messages_total", {"outcome": "failed_provider"}, failed)
    return failed + requeued


def outbox_seconds_until_ready(*, now: datetime | None = None) -> float | None:
    """How long until some queued message could be claimed; None when nothing is queued."""
    now = now or timezone.now()
    queued = Message.objects.filter(status=Message.Status.QUEUED)
    next_due = queued.filter(next_attempt_at__gt=now).aggregate(at=Min("next_attempt_at"))["at"]
    # A message a dead worker left `sending` becomes claimable when its lease ends.
    lease_end = Message.objects.filter(status=Message.Status.SENDING).aggregate(
        at=Min("lease_expires_at")
    )["at"]
    if lease_end is not None:
        next_due = min(next_due, lease_end) if next_due else lease_end
    waiting_chips = (
        _chips_with_due(now)
        .filter(Q(live_due=True) | Q(proactive_due=True))
        .exclude(status__in=NOT_SENDING_STATUSES)
    )
    if not waiting_chips.exists() and next_due is None:
        return None
    candidates = [next_due] if next_due else []
    in_flight = Message.objects.filter(
        chip=OuterRef("pk"), status=Message.Status.SENDING, lease_expires_at__gt=now
    )
    for chip in waiting_chips.annotate(in_flight=Exists(in_flight)).only(
        "next_send_at",
        "next_proactive_at",
        "reply_window_started_at",
        "reply_window_count",
        "circuit_state",
        "circuit_retry_at",
    ):
        kinds = []
        if chip.live_due:
            kinds.append(pacing.chip_reply_ready_at(chip, now=now) or now)
        if chip.proactive_due:
            kinds.append(max(chip.next_proactive_at or now, now))
        busy_until = chip.next_send_at or now
        if chip.in_flight:
            # Another worker is sending on it: free as soon as its answer is recorded.
            busy_until = min(busy_until, now + IN_FLIGHT_POLL)
        ready = max(busy_until, min(kinds))
        if chip.circuit_state != Chip.CircuitState.CLOSED and chip.circuit_retry_at:
            ready = max(ready, chip.circuit_retry_at)
        candidates.append(ready)
    if not candidates:
        return None
    return max(0.0, (min(candidates) - now).total_seconds())


def outbox_drain(
    *, max_seconds: float = 0.0, transport: httpx.BaseTransport | None = None
) -> DrainReport:
    """Send whatever may leave; keep waiting for paced chips up to `max_seconds`.

    With `max_seconds=0` it sends what is ready now and returns (the kick after
    a message is queued); the periodic sweep passes a budget so paced chips keep
    flowing between sweeps. Several drains may run at once on several machines.
    """
    deadline = time.monotonic() + max_seconds
    report = DrainReport(recovered=outbox_recover_expired_leases())
    with provider_client(transport=transport) as client:
        while True:
            claims = outbox_claim_batch()
            if claims:
                for index, claim in enumerate(claims):
                    if index and not _lease_covers_a_send(claim):
                        # Slow sends ate the lease: the rest must not outlive it.
                        outbox_release_claims(claims[index:])
                        break
                    result = outbox_send_claimed(claim=claim, client=client)
                    report.attempts += 1
                    if result.ok:
                        report.sent += 1
                    else:
                        report.failed += 1
                        # The chip is in trouble (recorded above): the rest waits.
                        outbox_release_claims(claims[index + 1 :])
                        break
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            recovered = outbox_recover_expired_leases()
            if recovered:
                report.recovered += recovered
                continue
            wait = outbox_seconds_until_ready()
            if wait is None or wait > remaining:
                break
            # Short naps: another worker may take the chip, or a kick may add work.
            time.sleep(min(max(wait, 0.02), 1.0, remaining))
            if time.monotonic() > deadline:
                break
    return report


# --- Operator actions (admin, commands) --------------------------------------------------------


# The text of an outbound message may still change while it has not left.
EDITABLE_STATUSES = (Message.Status.QUEUED, Message.Status.FAILED)


def outbox_is_editable(message: Message) -> bool:
    return message.direction == Message.Direction.OUTBOUND and message.status in EDITABLE_STATUSES


def outbox_edit_body(*, message: Message, body: str) -> bool:
    """Change the text of an outbound message that has not left; False if it left meanwhile.

    One conditional UPDATE of the body alone: a full save would write back the
    status read when the operator opened the page, undoing a send (or a
    claim) that happened since.
    """
    return bool(
        Message.objects.filter(
            pk=message.pk, direction=Message.Direction.OUTBOUND, status__in=EDITABLE_STATUSES
        ).update(body=body, updated_at=timezone.now())
    )


def outbox_retry_now(*, messages: QuerySet[Message]) -> int:
    """Put failed or waiting outbound messages back at the head of the queue, attempts reset."""
    now = timezone.now()
    count = messages.filter(
        direction=Message.Direction.OUTBOUND,
        status__in=[Message.Status.QUEUED, Message.Status.FAILED],
    ).update(
        status=Message.Status.QUEUED,
        outcome="",
        attempts=0,
        next_attempt_at=now,
        failed_at=None,
        last_error="",
        updated_at=now,
    )
    if count:
        outbox_kick()
    return count


def outbox_cancel(*, messages: QuerySet[Message], reason: str) -> int:
    """Cancel outbound messages that have not left (queued or failed); in-flight ones stay."""
    now = timezone.now()
    with transaction.atomic():
        # A fresh queryset: the admin's carries joins that need not be locked.
        targets = list(
            Message.objects.filter(pk__in=messages.values("pk"))
            .select_for_update(skip_locked=True)
            .filter(
                direction=Message.Direction.OUTBOUND,
                status__in=[Message.Status.QUEUED, Message.Status.FAILED],
            )
        )
        for message in targets:
            _cancel(message, reason=reason, now=now)
    return len(targets)
