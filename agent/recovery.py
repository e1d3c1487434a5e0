"""Recovery of stuck conversations: the periodic task and `recover_stuck`."""

from __future__ import annotations

import logging

from agent.models import AgentRun
from agent.reprocess import BatchReport
from agent.selectors import stuck_messages
from agent.turns import message_reply
from core.brokers import agent_cluster, queue_waiting
from core.selectors import heartbeat_age_seconds, heartbeat_stale

logger = logging.getLogger(__name__)


def agent_line_moving() -> bool:
    """Whether turns wait in the agent's queue and a live agent cluster works through them.

    A queue nobody drains (the cluster is down) is not a line: what waits in
    it is recovered as lost. Unreadable broker: no line, the recovery acts as
    if every unanswered message were lost, which is safe (a turn is idempotent).
    """
    cluster = agent_cluster()
    if heartbeat_stale(heartbeat_age_seconds(cluster=cluster)):
        return False
    try:
        return queue_waiting(cluster) > 0
    except Exception:
        logger.exception("agent: could not read the length of the agent's queue")
        return False


def conversations_recover_stuck(*, dry_run: bool = False, limit: int = 200) -> BatchReport:
    """Reprocess each stuck conversation's last message once; never one still in line."""
    messages = list(stuck_messages(spare_in_line=agent_line_moving())[:limit])
    report = BatchReport(found=len(messages))
    for message in messages:
        result = None
        if not dry_run:
            result = message_reply(message_id=message.pk, trigger=AgentRun.Trigger.RECOVERY)
            logger.warning(
                "agent: recovered stuck conversation %s (message %s): %s",
                message.conversation_id,
                message.pk,
                result.status,
            )
        report.results.append((message, result))
    return report
