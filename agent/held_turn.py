"""A turn applied while the lead may still be typing, its reply held until the window ends.

Planning ahead (agent.plan_ahead) took the model call out of the stretch
after the burst window. What it left there, for every lead at once, was
applying the plan: reading the turn, writing the replies, the run, the flow
step. With a hundred leads writing to one chip, that stretch is CPU-bound.
So a plain plan is applied by the task that made it, inside the window,
with its replies queued but held: due only when the conversation's lease
ends. The task that resumes the turn when the window ends checks that the
conversation is still as the applied turn left it and releases the replies:
a few light statements instead of the whole turn.

A plain plan is replies and at most a flow step: no handoff, no close, no
opt-out, nothing learned about the lead, no error, and no earlier reply of
the conversation still queued (answering would cancel it, which could not
be undone). Any other plan waits for the window as before.

When anything the turn depends on changed meanwhile (the lead wrote again,
a reply failed, a human took over, the lead or the profile was edited, the
flow moved), the applied turn is withdrawn before anything leaves: its
replies cancelled with the reason shown in the conversation, its messages
back to unanswered, the flow step put back unless someone else moved it,
its run marked superseded. The turn is then answered as if nothing had
been applied. If the resuming task is lost, the replies leave when their
hold ends, together with the lease: late, never lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from agent.models import AgentRun
from agent.plan_ahead import TurnSnapshot
from agent.planning import TurnPlan
from conversations.models import Conversation, Message
from conversations.outbox import outbox_cancel

logger = logging.getLogger(__name__)

PAYLOAD_VERSION = 1
WITHDRAWN_REASON = _(
    "Withdrawn before sending: the conversation changed while the lead was typing, "
    "and the turn was reconsidered"
)
# Statuses of a reply that reached the provider, or is on its way there.
LEFT_STATUSES = (
    Message.Status.SENDING,
    Message.Status.SENT,
    Message.Status.DELIVERED,
    Message.Status.READ,
)


def plan_may_be_held(
    *, plan: TurnPlan, conversation: Conversation, turn: list[Message], snapshot: TurnSnapshot
) -> bool:
    """Whether applying this plan inside the window can be undone in full."""
    return bool(
        any(body.strip() for body in plan.replies)
        and plan.outcome == AgentRun.Outcome.REPLIED
        and plan.handoff is None
        and not (plan.close or plan.opt_out or plan.lead_updates or plan.lead_notes)
        and not plan.error
        and not conversation.last_error
        and not turn[-1].last_error
        and snapshot.queued_replies == 0
    )


@dataclass(frozen=True)
class HeldTurn:
    """An applied turn whose replies wait for the window's end; builtins in the payload."""

    conversation_id: int
    chip_id: int
    run_id: int
    turn_ids: list[int]
    reply_ids: list[int]
    # The flow step and data before and after the plan, when it moved the flow.
    flow_before: tuple[str, dict[str, Any]] | None
    flow_after: tuple[str, dict[str, Any]] | None
    snapshot: TurnSnapshot

    @classmethod
    def of(
        cls,
        *,
        conversation: Conversation,
        plan: TurnPlan,
        turn: list[Message],
        run: AgentRun,
        replies: list[Message],
        snapshot: TurnSnapshot,
    ) -> HeldTurn:
        moved = plan.flow_step is not None
        return cls(
            conversation_id=conversation.pk,
            chip_id=conversation.chip_id,
            run_id=run.pk,
            turn_ids=[message.pk for message in turn],
            reply_ids=[reply.pk for reply in replies],
            flow_before=(conversation.flow_step, conversation.flow_data or {}) if moved else None,
            flow_after=(plan.flow_step or "", plan.flow_data or {}) if moved else None,
            snapshot=snapshot,
        )

    def turn(self) -> list[Message]:
        """The turn's messages with what `turn_due_at` reads: when each came and was stored."""
        return list(
            Message.objects.filter(pk__in=self.turn_ids)
            .only("pk", "conversation_id", "received_at", "created_at")
            .order_by("created_at", "pk")
        )

    def as_payload(self) -> dict[str, Any]:
        return {
            "version": PAYLOAD_VERSION,
            "conversation": self.conversation_id,
            "chip": self.chip_id,
            "run": self.run_id,
            "turn": list(self.turn_ids),
            "replies": list(self.reply_ids),
            "flow_before": list(self.flow_before) if self.flow_before else None,
            "flow_after": list(self.flow_after) if self.flow_after else None,
            "messages": list(self.snapshot.messages),
            "state": self.snapshot.state,
        }

    @classmethod
    def from_payload(cls, payload: Any) -> HeldTurn | None:
        """None for anything this version cannot read (its replies then leave with the lease)."""
        try:
            if payload["version"] != PAYLOAD_VERSION:
                return None
            before, after = payload["flow_before"], payload["flow_after"]
            return cls(
                conversation_id=int(payload["conversation"]),
                chip_id=int(payload["chip"]),
                run_id=int(payload["run"]),
                turn_ids=[int(pk) for pk in payload["turn"]],
                reply_ids=[int(pk) for pk in payload["replies"]],
                flow_before=(str(before[0]), dict(before[1])) if before else None,
                flow_after=(str(after[0]), dict(after[1])) if after else None,
                snapshot=TurnSnapshot(
                    messages=tuple(payload["messages"]), state=str(payload["state"])
                ),
            )
        except (KeyError, IndexError, TypeError, ValueError):
            logger.warning(
                "agent: a held turn could not be read; its replies leave with the lease",
                exc_info=True,
            )
            return None


def held_replies(held: HeldTurn) -> QuerySet[Message]:
    """The held turn's replies that have not left (the release and the hold act on these)."""
    return Message.objects.filter(pk__in=held.reply_ids, status=Message.Status.QUEUED)


def held_turn_withdraw(held: HeldTurn, *, reason: str) -> bool:
    """Undo the applied turn before its replies leave; False when one already left.

    A reply leaves early only when the resuming task ran after the lease (and
    with it the hold) had ended: the turn was answered, and is not undone.
    """
    now = timezone.now()
    with transaction.atomic():
        if Message.objects.filter(pk__in=held.reply_ids, status__in=LEFT_STATUSES).exists():
            return False
        outbox_cancel(messages=Message.objects.filter(pk__in=held.reply_ids), reason=reason)
        Message.objects.filter(pk__in=held.turn_ids, status=Message.Status.PROCESSED).update(
            status=Message.Status.RECEIVED, processed_at=None, updated_at=now
        )
        if held.flow_before is not None and held.flow_after is not None:
            # Only if the flow is still where the plan put it: an operator who
            # moved it meanwhile keeps their move.
            Conversation.objects.filter(
                pk=held.conversation_id,
                flow_step=held.flow_after[0],
                flow_data=held.flow_after[1],
            ).update(flow_step=held.flow_before[0], flow_data=held.flow_before[1], updated_at=now)
        AgentRun.objects.filter(pk=held.run_id).update(outcome=AgentRun.Outcome.SUPERSEDED)
    return True
