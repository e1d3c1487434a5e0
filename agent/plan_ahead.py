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
import functools
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

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


@functools.cache
def _message_counts_sql() -> str:
    """The text of `_message_counts`, built once: it never changes."""
    quote = connection.ops.quote_name
    meta = Message._meta

    def column(name: str) -> str:
        return quote(meta.get_field(name).column)

    direction, status, reply_to = column("direction"), column("status"), column("reply_to")
    dead = ", ".join(["%s"] * len(DEAD_STATUSES))
    return (
        f"SELECT COUNT(*), MAX({column('id')}), "  # noqa: S608 - names from the model
        f"COUNT(CASE WHEN {direction} = %s AND {status} IN ({dead}) THEN 1 END), "
        f"COUNT(CASE WHEN {direction} = %s AND {status} = %s THEN 1 END), "
        f"COUNT(CASE WHEN {direction} = %s AND {column('purpose')} = %s AND {status} = %s "
        f"AND {reply_to} IS NOT NULL THEN 1 END) "
        f"FROM {quote(meta.db_table)} WHERE {column('conversation')} = %s"
    )


def _message_counts(conversation_id: int) -> tuple[int, int | None, int, int, int]:
    """All, last id, dead replies, ignored inbound and queued replies of the conversation.

    One statement whose text never changes: the ORM compiled the same
    five-count aggregate anew for every turn, twice per lead (when the turn
    is planned and when it resumes), about 2 ms of CPU each time on this
    machine against 0.15 ms for this.
    """
    params = [
        Message.Direction.OUTBOUND,
        *DEAD_STATUSES,
        Message.Direction.INBOUND,
        Message.Status.IGNORED,
        Message.Direction.OUTBOUND,
        Message.Purpose.REPLY,
        Message.Status.QUEUED,
        conversation_id,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_message_counts_sql(), params)
        count, last, dead, ignored, queued = cursor.fetchone()
    return count, last, dead, ignored, queued


def _state_digest(state: tuple[Any, ...]) -> str:
    return hashlib.sha256(json.dumps(state, default=str).encode()).hexdigest()


def _profile_columns(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """A profile's (pk, is_active, updated_at) read through a join: `_profile_state`'s shape."""
    pk, is_active, updated_at = values
    return (None,) if pk is None else (pk, is_active, updated_at.isoformat())


def conversation_state(conversation_id: int) -> str | None:
    """`turn_snapshot`'s state digest read in one statement, without loading the rows.

    The same columns, in the same shape, so the two digests of one
    conversation compare; None when the conversation is gone.
    """
    row = (
        Conversation.objects.filter(pk=conversation_id)
        .values_list(
            "chip_id",
            "status",
            "controlled_by",
            "agent_paused",
            "flow_step",
            "flow_data",
            "agent_profile_id",
            "agent_profile__is_active",
            "agent_profile__updated_at",
            "chip__agent_profile_id",
            "chip__agent_profile__is_active",
            "chip__agent_profile__updated_at",
            "lead__opted_out",
            "lead__name",
            "lead__email",
            "lead__company",
        )
        .first()
    )
    if row is None:
        return None
    return _state_digest(
        (
            *row[:5],
            json.dumps(row[5] or {}, sort_keys=True, default=str),
            *_profile_columns(row[6:9]),
            *_profile_columns(row[9:12]),
            *row[12:],
        )
    )


def conversation_snapshot(conversation_id: int) -> TurnSnapshot | None:
    """`turn_snapshot` in two statements, without loading the rows (agent.held_turn)."""
    state = conversation_state(conversation_id)
    if state is None:
        return None
    count, last, dead, ignored, queued_replies = _message_counts(conversation_id)
    return TurnSnapshot(
        messages=(count, last, dead, ignored), state=state, queued_replies=queued_replies
    )


def turn_snapshot(*, conversation: Conversation) -> TurnSnapshot:
    """The conversation as loaded (`agent.turns._load`) and its messages now: one query.

    Taken before the turn is read, so that anything that happens after it
    (a message stored, a reply failing) shows as a difference when the
    window ends.
    """
    count, last, dead, ignored, queued_replies = _message_counts(conversation.pk)
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
        messages=(count, last, dead, ignored),
        state=_state_digest(state),
        queued_replies=queued_replies,
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
