"""Recovery of stuck conversations: the periodic task and `recover_stuck`."""

from __future__ import annotations

import logging

from agent.models import AgentRun
from agent.reprocess import BatchReport
from agent.selectors import stuck_messages
from agent.turns import message_reply

logger = logging.getLogger(__name__)


def conversations_recover_stuck(*, dry_run: bool = False, limit: int = 200) -> BatchReport:
    """Reprocess each stuck conversation's last message once."""
    messages = list(stuck_messages()[:limit])
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
