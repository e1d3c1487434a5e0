"""Answering again: the admin's "Reprocess", `reprocess_failed` and their tasks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.utils.translation import gettext

from agent.models import AgentRun
from agent.selectors import message_is_answered, unanswered_messages
from agent.turns import ANSWERED, MISSING, SKIPPED, ProcessResult, message_reply
from conversations.models import Message
from conversations.reprocessing import ReprocessRequest
from core.audit import audit_record
from core.models import AuditEntry


def reprocess_message(*, message: Message, force: bool = False) -> ProcessResult:
    """Answer an inbound message again, unless it already has a live reply (`force` for ops).

    The check runs again under the conversation's lease, so two reprocessings
    at once still send one reply.
    """
    if message.direction != Message.Direction.INBOUND:
        return ProcessResult(
            status=SKIPPED, detail=gettext("Only received messages can be reprocessed")
        )
    if not force and message_is_answered(message=message):
        return ProcessResult(status=ANSWERED, detail=gettext("Message already answered"))
    return message_reply(message_id=message.pk, trigger=AgentRun.Trigger.REPROCESS, force=force)


def message_reprocess_by_id(*, message_id: int, force: bool = False) -> ProcessResult:
    message = Message.objects.filter(pk=message_id).first()
    if message is None:
        return ProcessResult(status=MISSING, detail=gettext("Message not found"))
    return reprocess_message(message=message, force=force)


def messages_reprocess_enqueue(
    *, messages: Sequence[Message], force: bool = False
) -> ReprocessRequest:
    """The admin's "Reprocess": answered messages are counted and left alone, others queued.

    The worker checks again under the conversation's lease, so a message
    answered in between still gets one reply.
    """
    from django_q.tasks import async_task

    from core.brokers import agent_cluster

    report = ReprocessRequest()
    for message in messages:
        if message.direction != Message.Direction.INBOUND:
            report.not_inbound += 1
        elif not force and message_is_answered(message=message):
            report.answered += 1
        else:
            message_id = message.pk
            transaction.on_commit(
                lambda message_id=message_id: async_task(
                    "agent.tasks.reprocess_message",
                    message_id,
                    force,
                    group="agent",
                    cluster=agent_cluster(),
                )
            )
            report.queued += 1
    return report


@dataclass
class BatchReport:
    found: int = 0
    results: list[tuple[Message, ProcessResult | None]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, result in self.results:
            status = result.status if result else "dry_run"
            counts[status] = counts.get(status, 0) + 1
        return counts

    def audit(
        self, *, action: str, source: str, actor_label: str, detail: dict | None = None
    ) -> AuditEntry:
        """The audit entry of a batch that ran: the messages it took up and their outcomes."""
        return audit_record(
            action=action,
            source=source,
            actor_label=actor_label,
            target=Message,
            objects=[message for message, _ in self.results],
            detail={**(detail or {}), **self.counts()},
        )


def reprocess_failed(
    *, since: timedelta, phone: str | None = None, dry_run: bool = False, limit: int = 500
) -> BatchReport:
    """The runbook's batch option: answer every conversation left without a reply."""
    messages = list(unanswered_messages(since=since, phone=phone)[:limit])
    report = BatchReport(found=len(messages))
    for message in messages:
        result = None if dry_run else reprocess_message(message=message)
        report.results.append((message, result))
    return report


# --- Recovery of stuck conversations (the periodic task, recover_stuck) ---------------
