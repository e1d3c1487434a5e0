"""django-q2 entry points of the conversations app. Each one calls a service."""

import os

from django.conf import settings

from conversations import handoff_notify as notify
from conversations.chatwoot_mirror import chatwoot_mirror_drain
from conversations.outbox import outbox_drain
from conversations.ownership import human_takeovers_expire
from conversations.retention import data_purge
from core.audit import audit_record
from core.models import AuditEntry


def outbox_send_now() -> dict[str, int]:
    """The kick enqueued after a message is queued: send what is ready, then stop."""
    return outbox_drain(max_seconds=0).as_dict()


def outbox_sweep(max_seconds: float | None = None) -> dict[str, int]:
    """The periodic sender: recovers expired leases and drains paced chips for a while."""
    budget = settings.OUTBOX_DRAIN_SECONDS if max_seconds is None else max_seconds
    # The worker's pid in the task result tells ops (and tests) who drained what.
    return {**outbox_drain(max_seconds=budget).as_dict(), "pid": os.getpid()}


def handoff_sweep() -> dict[str, int]:
    """The periodic handoff chores: quiet takeovers go back to the agent; Slack notices due."""
    return {"expired": human_takeovers_expire(), **notify.handoff_notices_due()}


def handoff_notify(handoff_id: int) -> bool:
    """The opening notice of one handoff, enqueued after it was saved."""
    return notify.handoff_notify(handoff_id=handoff_id)


def chatwoot_mirror_conversation(conversation_id: int) -> dict[str, int]:
    """Enqueued after a conversation got something to mirror: write it to Chatwoot, in order."""
    return chatwoot_mirror_drain(conversation_id=conversation_id).as_dict()


def chatwoot_mirror_sweep() -> dict[str, int]:
    """Every minute: whatever waits for Chatwoot and is due (retries, lost kicks, the probe)."""
    return chatwoot_mirror_drain().as_dict()


def purge_old_data() -> dict[str, int]:
    """Daily: the retention settings' purge (batched), audited when it deleted anything."""
    report = data_purge()
    if report.total:
        audit_record(
            action="purge_old_data",
            source=AuditEntry.Source.TASK,
            actor_label="conversations.tasks.purge_old_data",
            count=report.total,
            detail=report.counts,
        )
    return report.counts
