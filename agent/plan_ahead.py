"""Planning a turn while the lead may still be typing; the plan is applied when the window ends.

The burst window (agent.turns) holds every turn for seconds in which the
machine mostly waits, and after it a hundred turns that became due together
queue for the same cores. Planning (the history read, the model call and
its client's work) is pure of writes (agent.planning), so the task that
schedules the turn plans it at once and the scheduled task carries the plan.

When the window ends the plan is applied only if the conversation is still
as the plan saw it: the same messages (none new, none failed, cancelled or
ignored since) and the same state (status, owner, pause, flow step and data,
profiles, the lead's details). Otherwise the turn is planned again, as
without this. A plan that failed (the model down, a bug) is not carried: the
turn asks the model again when the window ends.

The price is tokens: a lead who writes again inside the window makes the
plan useless, one model call per message that restarts the window.
AGENT_PLAN_DURING_WINDOW=False turns planning ahead off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Max, Q

from agent.models import AgentProfile, AgentRun
from agent.planning import TurnPlan, ms_since, plan_turn
from agent.selectors import DEAD_STATUSES
from conversations.models import Conversation, Message

logger = logging.getLogger(__name__)

PAYLOAD_VERSION = 1


@dataclass(frozen=True)
class TurnSnapshot:
    """What a plan depends on, in builtins (it travels in the task's arguments)."""

    messages: tuple[int, int | None, int, int]  # count, last id, dead replies, ignored inbound
    state: str  # a digest: the lead's details need not sit in the broker
    # Not part of what the plan depends on (a queued reply that leaves meanwhile
    # changes nothing): read by the turn, which then has none to supersede.
    queued_replies: int = field(default=0, compare=False)


@dataclass
class PlannedTurn:
    """A plan made during the window, with the turn and the state it was made for."""

    turn_ids: list[int]
    profile_id: int | None
    snapshot: TurnSnapshot
    plan: TurnPlan
    plan_ms: int

    def as_payload(self) -> dict[str, Any]:
        """Builtins only: a task queued before a deploy must still unpickle after it."""
        return {
            "version": PAYLOAD_VERSION,
            "turn": list(self.turn_ids),
            "profile": self.profile_id,
            "messages": list(self.snapshot.messages),
            "state": self.snapshot.state,
            "plan": dataclasses.asdict(self.plan),
            "plan_ms": self.plan_ms,
        }

    @classmethod
    def from_payload(cls, payload: Any) -> PlannedTurn | None:
        """None for anything this version cannot read: the turn is then planned again."""
        try:
            if payload["version"] != PAYLOAD_VERSION:
                return None
            plan = dict(payload["plan"])
            if plan.get("handoff") is not None:
                plan["handoff"] = tuple(plan["handoff"])
            return cls(
                turn_ids=[int(pk) for pk in payload["turn"]],
                profile_id=payload["profile"],
                snapshot=TurnSnapshot(
                    messages=tuple(payload["messages"]), state=str(payload["state"])
                ),
                plan=TurnPlan(**plan),
                plan_ms=int(payload["plan_ms"]),
            )
        except (KeyError, TypeError, ValueError):
            logger.warning("agent: a planned turn could not be read; planning it again")
            return None


def _profile_state(profile: AgentProfile | None) -> tuple[Any, ...]:
    if profile is None:
        return (None,)
    return (profile.pk, profile.is_active, profile.updated_at.isoformat())


def turn_snapshot(*, conversation: Conversation) -> TurnSnapshot:
    """The conversation as loaded (`agent.turns._load`) and its messages now: one query.

    Taken before the turn is read, so that anything that happens after it
    (a message stored, a reply failing) shows as a difference when the
    window ends.
    """
    counts = Message.objects.filter(conversation_id=conversation.pk).aggregate(
        count=Count("pk"),
        last=Max("pk"),
        dead=Count(
            "pk",
            filter=Q(direction=Message.Direction.OUTBOUND, status__in=DEAD_STATUSES),
        ),
        ignored=Count(
            "pk",
            filter=Q(direction=Message.Direction.INBOUND, status=Message.Status.IGNORED),
        ),
        queued_replies=Count(
            "pk",
            filter=Q(
                direction=Message.Direction.OUTBOUND,
                purpose=Message.Purpose.REPLY,
                status=Message.Status.QUEUED,
                reply_to__isnull=False,
            ),
        ),
    )
    lead = conversation.lead
    state = (
        conversation.chip_id,
        conversation.status,
        conversation.controlled_by,
        conversation.agent_paused,
        conversation.flow_step,
        json.dumps(conversation.flow_data or {}, sort_keys=True, default=str),
        *_profile_state(conversation.agent_profile),
        *_profile_state(conversation.chip.agent_profile),
        lead.opted_out,
        lead.name,
        lead.email,
        lead.company,
    )
    return TurnSnapshot(
        messages=(counts["count"], counts["last"], counts["dead"], counts["ignored"]),
        state=hashlib.sha256(json.dumps(state, default=str).encode()).hexdigest(),
        queued_replies=counts["queued_replies"],
    )


def turn_plan_ahead(
    *,
    conversation: Conversation,
    profile: AgentProfile,
    turn: list[Message],
    snapshot: TurnSnapshot,
) -> PlannedTurn | None:
    """Plan the turn now, for the task that resumes it; None when there is nothing to carry."""
    started = time.monotonic()
    try:
        plan = plan_turn(conversation=conversation, profile=profile, turn=turn)
    except Exception:
        logger.exception("agent: planning ahead failed in conversation %s", conversation.pk)
        return None
    if plan.outcome == AgentRun.Outcome.FALLBACK:
        return None
    return PlannedTurn(
        turn_ids=[message.pk for message in turn],
        profile_id=profile.pk,
        snapshot=snapshot,
        plan=plan,
        plan_ms=ms_since(started),
    )


def planned_turn_current(
    *, payload: Any, snapshot: TurnSnapshot
) -> tuple[PlannedTurn, list[Message]] | None:
    """The carried plan and its turn's messages, if nothing it depends on changed."""
    planned = PlannedTurn.from_payload(payload)
    if planned is None or planned.snapshot != snapshot:
        return None
    turn = list(Message.objects.filter(pk__in=planned.turn_ids).order_by("created_at", "pk"))
    if [message.pk for message in turn] != planned.turn_ids:
        return None
    return planned, turn
