"""Answering a lead's turn: the worker task's entry point, under the conversation's lease.

A message that arrives while another worker holds the conversation is left to
that worker, which looks for new messages after releasing the lease.

Never silence, never a traceback to the lead: when the model fails (or there
is no model), the profile's fallback reply goes out and, by default, a human
takes over; the error is kept on the conversation and on the AgentRun.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, TextField, Value, When
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from agent.held_turn import (
    WITHDRAWN_REASON,
    HeldTurn,
    held_replies,
    held_turn_withdraw,
    plan_may_be_held,
)
from agent.leases import lease_acquire, lease_hold, lease_release
from agent.models import AgentRun
from agent.plan_ahead import (
    PlannedTurn,
    TurnSnapshot,
    conversation_snapshot,
    conversation_state,
    planned_turn_current,
    turn_plan_ahead,
    turn_snapshot,
)
from agent.planning import TurnPlan, describe_error, failure_plan, ms_since, plan_turn
from agent.selectors import (
    MAX_TURN_MESSAGES,
    default_profile,
    latest_inbound_after,
    pending_turn,
    profile_for,
    why_not_answer,
)
from channels.event_backlog import webhook_events_unprocessed
from conversations.addressing import lead_addresses
from conversations.handoffs import handoff_open
from conversations.models import Conversation, Lead, Message
from conversations.outbox import outbox_cancel, outbox_enqueue, outbox_kick
from conversations.ownership import conversation_set_owner
from conversations.presence import presence_typing
from core.brokers import agent_cluster, async_task_at
from core.db import db_retry_transient
from core.metrics import histogram_observe

logger = logging.getLogger(__name__)

ANSWER_TASK = "agent.tasks.answer_message"
SUPERSEDED_REASON = _(
    "Superseded: the lead wrote again before the send and got the reply to the newest message"
)


@dataclass
class ProcessResult:
    """What one processing run did; `status` is one of the constants below."""

    status: str
    detail: str = ""
    run_id: int | None = None
    replies: int = 0
    message_id: int | None = None  # the turn's last message (the reply's reply_to)
    # The conversation's lease went with the turn's own commit (see `_process_turn`).
    lease_released: bool = False


REPLIED = "replied"
HANDOFF = "handoff"
FALLBACK = "fallback"
OPTED_OUT = "opted_out"
ANSWERED = "already_answered"
SKIPPED = "skipped"
BUSY = "busy"
WAITING = "waiting"  # the lead may still be typing: resumed by a task due later
MISSING = "missing"


# --- The seam: ingest -> task ------------------------------------------------------------


def agent_enqueue(message_id: int) -> None:
    """AGENT_HOOKS entry: answer the message in a worker, never in the webhook's process.

    On the agent's own cluster (settings: Q_AGENT_CLUSTER): a slow model
    holds agent workers only, never the webhook processing or the sends.

    A database blip (the ORM broker is the database) is waited out; any other
    broker failure is logged, not raised: the message is stored, and the
    stuck-conversation recovery answers it after a couple of minutes.
    """
    from django_q.tasks import async_task

    try:
        db_retry_transient(
            lambda: async_task(
                ANSWER_TASK, message_id, group="agent", cluster=agent_cluster(), save=False
            )
        )
    except Exception:
        logger.exception("agent: could not enqueue the answer of message %s", message_id)


# --- The burst window: scheduled, never slept ------------------------------------------------


def _arrived(message: Message) -> datetime:
    return message.arrived_at


def _stored(message: Message) -> datetime:
    return message.created_at


def turn_quiet_at(
    turn: list[Message], *, clock: Callable[[Message], datetime] = _arrived
) -> datetime:
    """When the lead's burst counts as finished and the turn may be answered.

    Quiet for AGENT_BURST_WINDOW_SECONDS after the last message, but never
    later than AGENT_BURST_MAX_WAIT_SECONDS after the burst began (a lead who
    keeps typing still gets an answer). The burst is the run of messages each
    less than a window after the one before; an older unanswered message
    does not shorten the wait.

    Counted from when each message reached us (`arrived_at`), not from when
    intake stored it: a slow intake is not added to the wait (see
    `turn_due_at` for when it is).
    """
    last = clock(turn[-1])
    window = timedelta(seconds=settings.AGENT_BURST_WINDOW_SECONDS)
    if window <= timedelta(0):
        return last
    began = last
    for earlier in reversed(turn[:-1]):
        if began - clock(earlier) >= window:
            break
        began = clock(earlier)
    return min(last + window, began + timedelta(seconds=settings.AGENT_BURST_MAX_WAIT_SECONDS))


def turn_due_at(turn: list[Message], *, chip_id: int, now: datetime) -> datetime:
    """When to answer the turn: once quiet, and not before intake holds its burst.

    When intake lags (a flood), the window counted from arrival can end
    while a message the lead sent inside it still waits in line as a webhook
    event: answering then would answer half the burst, and the rest again
    right after. The window then counts from storage, as it always did:
    intake stores deliveries about in the order they came, so what the lead
    sent within the window is stored within the window after this one. One
    indexed read, made only once the window by arrival is over.
    """
    quiet = turn_quiet_at(turn)
    if quiet > now:
        return quiet
    if webhook_events_unprocessed(
        chip_id=chip_id, received_from=turn[-1].arrived_at, received_before=quiet
    ):
        return max(quiet, turn_quiet_at(turn, clock=_stored))
    return quiet


def _hold_until(due: datetime) -> datetime:
    """The end of a waiting turn's lease, and of its held replies' hold."""
    return due + timedelta(seconds=settings.AGENT_LEASE_SECONDS)


def _resume_later(
    *,
    conversation_id: int,
    token: str,
    message_id: int,
    due: datetime,
    planned: PlannedTurn | None = None,
    held: HeldTurn | None = None,
) -> bool:
    """Hold the conversation until `due` and have a worker resume the turn then.

    The worker is free meanwhile: no task sleeps through the window (two
    sleeping workers used to cap a cluster at one turn every two seconds).
    The lease stays ours, as when a worker slept holding it, so a message
    arriving meanwhile is left to the resumed turn (its own task finds the
    conversation busy) and only one task ever resumes it. The resume is a
    task held by the broker until `due` (core/brokers.py): durable as any
    queued task. Lost anyway (broker data gone), the lease expires and the
    stuck-conversation recovery answers. False when it could not be
    scheduled: the caller answers at once instead. A plan made during the
    window travels with it (agent.plan_ahead), or the turn applied with it
    (agent.held_turn), whose replies are held as long as the lease.
    """
    until = _hold_until(due)
    if not lease_hold(conversation_id=conversation_id, token=token, until=until):
        return False
    try:
        db_retry_transient(
            lambda: async_task_at(
                due,
                ANSWER_TASK,
                message_id,
                lease=token,
                ahead=planned.as_payload() if planned is not None else None,
                held=held.as_payload() if held is not None else None,
                group="agent",
                cluster=agent_cluster(),
                save=False,
            )
        )
    except Exception:
        logger.exception("agent: could not schedule the turn of conversation %s", conversation_id)
        return False
    return True


# --- The lease: one worker per conversation --------------------------------------------------


def message_reply(
    *,
    message_id: int,
    trigger: str = AgentRun.Trigger.INBOUND,
    force: bool = False,
    lease: str | None = None,
    ahead: dict[str, Any] | None = None,
    held: dict[str, Any] | None = None,
) -> ProcessResult:
    """Answer the turn an inbound message belongs to (the worker task's entry point).

    Without `force` nothing is sent when the message is already answered.
    With `force` (ops) the message and everything the lead wrote after it are
    answered again. `lease` is the token of a turn that waited for the lead
    to stop typing (the resumed task), `ahead` the plan made meanwhile,
    `held` the turn applied meanwhile, to release or withdraw.
    """
    message = (
        Message.objects.filter(pk=message_id, direction=Message.Direction.INBOUND)
        .only("pk", "conversation_id", "created_at")
        .first()
    )
    if message is None:
        return ProcessResult(status=MISSING, detail=gettext("Received message not found"))
    result = _process_with_lease(
        conversation_id=message.conversation_id,
        trigger=trigger,
        target=message,
        force=force,
        lease=lease,
        ahead=ahead,
        held=held,
    )
    if result.status in (BUSY, SKIPPED, WAITING):
        return result
    # A message that arrived while we held the conversation had its own task
    # give up (busy): it needs a new task. Looked for after releasing the
    # lease, so a message committed at any moment is seen either here or by
    # its own task. A new task rather than a loop here: the task's time limit
    # holds one turn, not several.
    if result.message_id is not None:
        newer = latest_inbound_after(
            conversation_id=message.conversation_id, message_id=result.message_id
        )
    else:
        turn = pending_turn(conversation_id=message.conversation_id)
        newer = turn[-1].pk if turn else None
    if newer is not None:
        agent_enqueue(newer)
    return result


def _process_with_lease(
    *,
    conversation_id: int,
    trigger: str,
    target: Message | None,
    force: bool = False,
    lease: str | None = None,
    ahead: dict[str, Any] | None = None,
    held: dict[str, Any] | None = None,
) -> ProcessResult:
    token = None
    if lease is not None:
        until = timezone.now() + timedelta(seconds=settings.AGENT_LEASE_SECONDS)
        if lease_hold(conversation_id=conversation_id, token=lease, until=until):
            token = lease
    # A resumed turn whose lease is gone (it expired and another worker
    # answered and released it) starts over like any other task.
    token = token or lease_acquire(conversation_id=conversation_id)
    if token is None:
        return ProcessResult(
            status=BUSY, detail=gettext("Another worker is answering this conversation")
        )
    waiting = released = False
    try:
        result = _process_turn(
            conversation_id=conversation_id,
            trigger=trigger,
            target=target,
            force=force,
            token=token,
            resumed_for=target.pk if lease is not None and target is not None else None,
            # Only the task holding the lease the plan was made under may apply
            # it, or release the turn applied under it.
            ahead=ahead if token == lease else None,
            held=HeldTurn.from_payload(held) if held is not None and token == lease else None,
        )
        waiting = result.status == WAITING
        released = result.lease_released
        return result
    finally:
        # Released even across a database blip: a lease left behind would turn
        # this turn's own retry away as "busy". A waiting turn keeps it.
        if not (waiting or released):
            db_retry_transient(lambda: lease_release(conversation_id=conversation_id, token=token))


def _load(conversation_id: int) -> Conversation:
    return Conversation.objects.select_related(
        "lead", "chip__agent_profile__flow", "agent_profile__flow"
    ).get(pk=conversation_id)


def _process_turn(
    *,
    conversation_id: int,
    trigger: str,
    target: Message | None,
    force: bool,
    token: str,
    resumed_for: int | None,
    ahead: dict[str, Any] | None = None,
    held: HeldTurn | None = None,
) -> ProcessResult:
    if held is not None:
        released = _held_turn_resume(held=held, token=token)
        if released is not None:
            return released
        # Withdrawn: the turn is answered afresh below, as if never applied.
    conversation = _load(conversation_id)
    reason = why_not_answer(conversation=conversation)
    if reason:
        return ProcessResult(status=SKIPPED, detail=reason)

    # Taken before the turn is read: whatever happens after it shows when the window ends.
    snapshot = (
        turn_snapshot(conversation=conversation)
        if trigger == AgentRun.Trigger.INBOUND
        and settings.AGENT_PLAN_DURING_WINDOW
        and (ahead is not None or settings.AGENT_BURST_WINDOW_SECONDS > 0)
        else None
    )
    current = (
        planned_turn_current(payload=ahead, snapshot=snapshot)
        if ahead is not None and snapshot is not None
        else None
    )
    planned: PlannedTurn | None = None
    if current is not None:
        planned, turn = current
    elif force and target is not None:
        turn = list(
            Message.objects.filter(
                conversation_id=conversation_id,
                direction=Message.Direction.INBOUND,
                created_at__gte=target.created_at,
            )
            .exclude(status=Message.Status.IGNORED)
            .order_by("created_at", "pk")[:MAX_TURN_MESSAGES]
        )
    else:
        turn = pending_turn(conversation_id=conversation_id)
        if target is not None and target.pk not in {m.pk for m in turn}:
            return ProcessResult(status=ANSWERED, detail=gettext("Message already answered"))
    if not turn:
        return ProcessResult(status=ANSWERED, detail="Nada a responder")
    for message in turn:
        # Loaded above with its lead and chip: the typing call and the plan
        # read them through each message without loading them again.
        message.conversation = conversation
        if message.chip_id == conversation.chip_id:
            message.chip = conversation.chip

    if trigger == AgentRun.Trigger.INBOUND:
        if turn[-1].pk != resumed_for:
            # "digitando…" while the lead finishes and the model thinks (again
            # for a message that came during the wait: it marks it read too);
            # never fails the turn.
            presence_typing(message=turn[-1])
        now = timezone.now()
        due = turn_due_at(turn, chip_id=conversation.chip_id, now=now)
        if due > now:
            # Not while intake still holds a delivery of this lead that came
            # after the turn's last message: it would make the plan a wasted
            # model call. Other leads' deliveries in line do not count: when a
            # hundred leads write to one chip at once, nearly every first task
            # found some, and their turns asked the model only once the window
            # had ended. A turn that waits by storage (due past its quiet time)
            # already found deliveries of the chip in `turn_due_at`; otherwise
            # one indexed read, empty unless intake lags.
            if (
                planned is None
                and snapshot is not None
                and due == turn_quiet_at(turn)
                and not webhook_events_unprocessed(
                    chip_id=conversation.chip_id,
                    received_from=turn[-1].arrived_at,
                    received_before=now,
                    naming=lead_addresses(conversation.lead, provider=conversation.chip.provider),
                )
            ):
                planned = turn_plan_ahead(
                    conversation=conversation,
                    profile=profile_for(conversation=conversation) or default_profile(),
                    turn=turn,
                    snapshot=snapshot,
                )
            applied = (
                _held_turn_apply(
                    conversation=conversation, planned=planned, turn=turn, due=due, before=snapshot
                )
                if planned is not None
                and snapshot is not None
                and settings.AGENT_APPLY_DURING_WINDOW
                and plan_may_be_held(
                    plan=planned.plan, conversation=conversation, turn=turn, snapshot=snapshot
                )
                else None
            )
            if _resume_later(
                conversation_id=conversation_id,
                token=token,
                message_id=turn[-1].pk,
                due=due,
                planned=planned if applied is None else None,
                held=applied,
            ):
                return ProcessResult(
                    status=WAITING,
                    detail=gettext("Waiting for the lead to finish typing"),
                    message_id=turn[-1].pk,
                )
            if applied is not None:
                # No task will resume it: the replies leave now rather than with the lease.
                return _held_turn_release(held=applied, token=token, arrived=turn[-1].arrived_at)

    histogram_observe(
        "agent_debounce_seconds", (timezone.now() - turn[-1].arrived_at).total_seconds()
    )
    if planned is not None:
        # Planned during the window for this very state: one INSERT, no model call now.
        plan = planned.plan
        run = AgentRun(
            conversation=conversation,
            message=turn[-1],
            profile_id=planned.profile_id,
            trigger=trigger,
        )
        planning_ms = planned.plan_ms
    else:
        profile = profile_for(conversation=conversation) or default_profile()
        run = AgentRun.objects.create(
            conversation=conversation,
            message=turn[-1],
            profile=profile if profile.pk else None,
            kind=AgentRun.Kind.LLM,
            trigger=trigger,
            outcome=AgentRun.Outcome.RUNNING,
        )
        started = time.monotonic()
        try:
            plan = plan_turn(conversation=conversation, profile=profile, turn=turn)
        except Exception as exc:
            # A bug of ours must not leave the lead in silence either.
            logger.exception("agent: run %s failed", run.pk)
            plan = failure_plan(
                profile=profile, kind=AgentRun.Kind.FALLBACK, error=describe_error(exc)
            )
        planning_ms = ms_since(started)
    with transaction.atomic():
        replies = _apply(
            conversation=conversation,
            plan=plan,
            turn=turn,
            # Only this conversation's turns queue replies, under the lease we hold.
            supersede=snapshot is None or snapshot.queued_replies > 0,
        )
        _run_record(run, plan=plan, planning_ms=planning_ms)
        # Let go of the conversation in the same commit as the turn: the next
        # worker sees both or neither, and the turn pays one commit, not two.
        lease_release(conversation_id=conversation_id, token=token)
    status = {
        AgentRun.Outcome.HANDOFF: HANDOFF,
        AgentRun.Outcome.FALLBACK: FALLBACK,
    }.get(plan.outcome, OPTED_OUT if plan.opt_out else REPLIED)
    return ProcessResult(
        status=status,
        detail=plan.error,
        run_id=run.pk,
        replies=len(replies),
        message_id=turn[-1].pk,
        lease_released=True,
    )


def _run_record(run: AgentRun, *, plan: TurnPlan, planning_ms: int) -> None:
    run.latency_ms = plan.llm_ms if plan.llm_ms is not None else planning_ms
    run.kind = plan.kind
    run.outcome = plan.outcome
    run.error = plan.error[:5000]
    run.model = plan.model[:100]
    run.prompt_tokens = plan.prompt_tokens
    run.completion_tokens = plan.completion_tokens
    run.tool_calls = plan.tool_calls
    run.finished_at = timezone.now()
    run.save()


def _apply(
    *,
    conversation: Conversation,
    plan: TurnPlan,
    turn: list[Message],
    supersede: bool = True,
    hold_until: datetime | None = None,
) -> list[Message]:
    """Write the plan's effects. With `hold_until`, its replies are queued but held till then."""
    now = timezone.now()
    last = turn[-1]
    replies = [
        outbox_enqueue(
            conversation=conversation,
            body=body,
            purpose=plan.purpose,
            reply_to=last,
            not_before=hold_until,
        )
        for body in plan.replies
        if body.strip()
    ]
    if replies and supersede:
        _supersede_stale_replies(conversation=conversation, last=last)
    processed: dict[str, Any] = {
        "status": Message.Status.PROCESSED,
        "processed_at": now,
        "updated_at": now,
    }
    if last.last_error != plan.error:
        # The error also stays on the message it concerns, for the ops' message
        # filters. Only then: the CASE costs the ORM more to compile than the
        # rest of the update, on every turn.
        processed["last_error"] = Case(
            When(pk=last.pk, then=Value(plan.error, output_field=TextField())),
            default=F("last_error"),
        )
    Message.objects.filter(pk__in=[m.pk for m in turn]).update(**processed)
    fields: dict[str, Any] = {"updated_at": now}
    if plan.flow_step is not None:
        fields["flow_step"] = plan.flow_step
        fields["flow_data"] = plan.flow_data or {}
    if plan.error:
        fields["last_error"] = plan.error
        fields["last_error_at"] = now
    elif conversation.last_error:
        fields["last_error"] = ""
    Conversation.objects.filter(pk=conversation.pk).update(**fields)
    if plan.close and plan.handoff is None:
        conversation_set_owner(
            conversation=conversation,
            owner=Conversation.ControlledBy.CLOSED,
            reason="Fluxo encerrou a conversa",
            actor_label="agente",
        )
    _lead_apply(lead=conversation.lead, plan=plan, now=now)
    if plan.handoff is not None:
        reason, note = plan.handoff
        handoff_open(conversation=conversation, reason=reason, note=note)
    if replies and hold_until is None:
        # What the lead feels (agent_response_seconds) is observed when the
        # provider accepts the first part, in the outbox. A held turn's is
        # observed when its replies are released.
        histogram_observe("agent_turn_seconds", (now - last.arrived_at).total_seconds())
    if plan.kind == AgentRun.Kind.LLM and plan.llm_ms is not None:
        histogram_observe("agent_llm_seconds", plan.llm_ms / 1000)
    return replies


# --- A turn applied during the window (agent.held_turn) ----------------------------------------


def _held_turn_apply(
    *,
    conversation: Conversation,
    planned: PlannedTurn,
    turn: list[Message],
    due: datetime,
    before: TurnSnapshot,
) -> HeldTurn | None:
    """Apply a plain plan now, its replies held until the lease ends; None if it failed.

    `before` is the snapshot taken before the turn was read: what the
    window's end must find is that, plus the replies written here and the
    flow step moved here. A message the lead sent meanwhile (stored while
    the model was asked) is then a difference, as it must be: the applied
    turn did not answer it. The state is read back after the writes, in the
    statement the window's end will read it with.
    """
    plan = planned.plan
    try:
        with transaction.atomic():
            replies = _apply(
                conversation=conversation,
                plan=plan,
                turn=turn,
                supersede=False,  # nothing to supersede (plan_may_be_held)
                hold_until=_hold_until(due),
            )
            run = AgentRun(
                conversation=conversation,
                message=turn[-1],
                profile_id=planned.profile_id,
                trigger=AgentRun.Trigger.INBOUND,
            )
            _run_record(run, plan=plan, planning_ms=planned.plan_ms)
            state = conversation_state(conversation.pk)
    except Exception:
        # The turn is then applied when the window ends, as without this.
        logger.exception("agent: applying the turn of conversation %s failed", conversation.pk)
        return None
    if state is None:
        return None
    count, last, dead, ignored = before.messages
    snapshot = TurnSnapshot(
        messages=(count + len(replies), max(last or 0, *(r.pk for r in replies)), dead, ignored),
        state=state,
    )
    return HeldTurn.of(
        conversation=conversation, plan=plan, turn=turn, run=run, replies=replies, snapshot=snapshot
    )


def _held_turn_resume(*, held: HeldTurn, token: str) -> ProcessResult | None:
    """When the window ends: release the held replies, or withdraw the turn (None).

    Withdrawn when anything the turn depends on changed since it was
    applied; held longer when intake still holds deliveries of the chip from
    within the window (`turn_due_at`), as a turn waiting for them would be.
    """
    if conversation_snapshot(held.conversation_id) != held.snapshot:
        if held_turn_withdraw(held, reason=_withdrawal_reason(held)):
            return None
        return _held_turn_release(held=held, token=token)
    turn = held.turn()
    now = timezone.now()
    due = turn_due_at(turn, chip_id=held.chip_id, now=now) if turn else now
    if due > now:
        held_replies(held).update(next_attempt_at=_hold_until(due))
        if _resume_later(
            conversation_id=held.conversation_id,
            token=token,
            message_id=turn[-1].pk,
            due=due,
            held=held,
        ):
            return ProcessResult(
                status=WAITING,
                detail=gettext("Waiting for the lead to finish typing"),
                message_id=turn[-1].pk,
            )
    return _held_turn_release(held=held, token=token, arrived=turn[-1].arrived_at if turn else None)


def _withdrawal_reason(held: HeldTurn) -> str:
    """The lead's new message is the usual cause, and its reason says what the lead got."""
    newer = latest_inbound_after(conversation_id=held.conversation_id, message_id=held.turn_ids[-1])
    return str(SUPERSEDED_REASON if newer is not None else WITHDRAWN_REASON)


def _held_turn_release(
    *, held: HeldTurn, token: str, arrived: datetime | None = None
) -> ProcessResult:
    """The held replies are due now; the conversation is let go in the same commit.

    `arrived`: when the turn's last message came, for the debounce and turn metrics.
    """
    now = timezone.now()
    with transaction.atomic():
        released = held_replies(held).update(next_attempt_at=now, updated_at=now)
        lease_release(conversation_id=held.conversation_id, token=token)
        if released:
            outbox_kick(chip_id=held.chip_id)
    if arrived is not None:
        histogram_observe("agent_debounce_seconds", (now - arrived).total_seconds())
        if released:
            histogram_observe("agent_turn_seconds", (now - arrived).total_seconds())
    return ProcessResult(
        status=REPLIED,
        run_id=held.run_id,
        replies=released,
        message_id=held.turn_ids[-1],
        lease_released=True,
    )


def _supersede_stale_replies(*, conversation: Conversation, last: Message) -> int:
    """Cancel the agent's queued replies to earlier turns: this turn's answer replaces them.

    The lead wrote again before they left (answered a question still in the
    outbox, say): sending them now would ask what was already answered. Only
    called once this turn has a reply of its own, so the lead is never left
    without one; a reply already being sent goes.
    """
    stale = Message.objects.filter(
        conversation=conversation,
        direction=Message.Direction.OUTBOUND,
        purpose=Message.Purpose.REPLY,
        status=Message.Status.QUEUED,
        reply_to__isnull=False,
    ).exclude(reply_to=last)
    return outbox_cancel(messages=stale, reason=SUPERSEDED_REASON)


def _lead_apply(*, lead: Lead, plan: TurnPlan, now: Any) -> None:
    fields: list[str] = []
    if plan.opt_out and not lead.opted_out:
        lead.opted_out, lead.opted_out_at = True, now
        fields += ["opted_out", "opted_out_at"]
    for name, value in plan.lead_updates.items():
        if name == "email" and "@" not in value:
            continue
        if getattr(lead, name) != value:
            setattr(lead, name, value)
            fields.append(name)
    if plan.lead_notes:
        notes = [*lead.attributes.get("agent_notes", []), *plan.lead_notes][-20:]
        lead.attributes = {**lead.attributes, "agent_notes": notes}
        fields.append("attributes")
    if fields:
        lead.save(update_fields=[*fields, "updated_at"])


# --- Reprocessing (admin action, reprocess_failed) ----------------------------------------
