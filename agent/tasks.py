"""django-q2 entry points of the agent; each one calls a service."""

from typing import Any

from agent.recovery import conversations_recover_stuck
from agent.reprocess import message_reprocess_by_id
from agent.turns import message_reply
from core.db import db_retry_transient
from core.models import AuditEntry


def answer_message(
    message_id: int,
    lease: str | None = None,
    ahead: dict[str, Any] | None = None,
    held: dict[str, Any] | None = None,
) -> str:
    """Enqueued after ingest commits a lead's message (see agent.apps / AGENT_HOOKS).

    With `lease`: the same turn resumed once the lead stopped typing (it was
    scheduled for then by agent.turns, holding the conversation's lease);
    `ahead` is the plan made meanwhile (agent.plan_ahead), applied if still current;
    `held` the turn applied meanwhile (agent.held_turn), released or withdrawn.

    A turn cut by a database blip is answered again when the database is
    back (a turn is idempotent: an answered message is not answered twice),
    instead of waiting for the stuck-conversation recovery.
    """
    return db_retry_transient(
        lambda: message_reply(message_id=message_id, lease=lease, ahead=ahead, held=held)
    ).status


def recover_stuck() -> dict[str, int]:
    """Periodic: answer conversations whose last lead message was never answered."""
    report = conversations_recover_stuck()
    if report.found:
        # Only runs that did something: an entry a minute saying "nothing" is noise.
        report.audit(
            action="recover_stuck",
            source=AuditEntry.Source.TASK,
            actor_label="agent.tasks.recover_stuck",
        )
    return report.counts()


def reprocess_message(message_id: int, force: bool = False) -> str:
    """Enqueued by the admin's "Reprocess" actions: the LLM never runs in a web request."""
    return message_reprocess_by_id(message_id=message_id, force=force).status
