"""Data retention: old conversations, messages and webhook events go; people can be erased.

`data_purge` replaces the runbook's cleanup SQL (conversations and messages
after 90 days, the sent queue after 30, webhook events after 30). It deletes
in batches of RETENTION_BATCH_SIZE rows, one short transaction each, so no
lock is held long on tables the intake and the outbox write every second.

`lead_anonymize` answers a data-protection request: the person (name, phone,
e-mail, identities, what they wrote and what was written to them, raw
payloads) goes; the rows that feed the statistics (messages with their
status, outcome and timestamps, conversations, handoffs, campaign results)
stay, stripped of content.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from channels.models import WebhookEvent
from conversations.models import Conversation, DeliveryAttempt, Handoff, Lead, LeadIdentity, Message

ERASED = "[removido]"


@dataclass
class PurgeReport:
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    longest_batch_ms: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def purge_candidates(now: datetime | None = None) -> dict[str, QuerySet]:
    """What each retention rule would delete, oldest first, keyed by a label for reports."""
    now = now or timezone.now()
    messages_before = now - timedelta(days=settings.RETENTION_MESSAGES_DAYS)
    outbox_before = now - timedelta(days=settings.RETENTION_SENT_OUTBOX_DAYS)
    events_before = now - timedelta(days=settings.RETENTION_WEBHOOK_EVENTS_DAYS)
    return {
        # The sent queue's bookkeeping: delivery attempts of messages that left.
        "delivery_attempts": DeliveryAttempt.objects.filter(
            started_at__lt=outbox_before,
            message__status__in=["sent", "delivered", "read"],
        ),
        "webhook_events": WebhookEvent.objects.filter(received_at__lt=events_before),
        # Never what is still in the outbox, however old: the sender owns it.
        "messages": Message.objects.filter(created_at__lt=messages_before).exclude(
            status__in=["queued", "sending"]
        ),
        # A conversation goes once it is quiet for the period and no message of
        # it survives the rule above (a recent one, or one still in the outbox).
        "conversations": Conversation.objects.filter(
            Q(last_message_at__lt=messages_before)
            | Q(last_message_at__isnull=True, created_at__lt=messages_before)
        ).exclude(
            Q(messages__created_at__gte=messages_before)
            | Q(messages__status__in=["queued", "sending"])
        ),
    }


def data_purge(
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    batch_size: int | None = None,
    on_batch: Callable[[str, int], None] | None = None,
) -> PurgeReport:
    """Delete what the retention settings say is too old, in bounded batches."""
    batch_size = batch_size or settings.RETENTION_BATCH_SIZE
    report = PurgeReport(dry_run=dry_run)
    for label, queryset in purge_candidates(now).items():
        if dry_run:
            report.counts[label] = queryset.count()
            continue
        deleted = 0
        while True:
            started = time.perf_counter()
            with transaction.atomic():
                ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size])
                if not ids:
                    break
                queryset.model.objects.filter(pk__in=ids).delete()
            elapsed = (time.perf_counter() - started) * 1000
            report.batches += 1
            report.longest_batch_ms = max(report.longest_batch_ms, elapsed)
            deleted += len(ids)
            if on_batch:
                on_batch(label, len(ids))
        report.counts[label] = deleted
    return report


@transaction.atomic
def lead_anonymize(*, lead: Lead) -> dict[str, Any]:
    """Remove the person from a lead and everything they wrote; keep the numbers."""
    messages = Message.objects.filter(conversation__lead=lead)
    events = list(
        messages.exclude(webhook_event__isnull=True).values_list("webhook_event_id", flat=True)
    )
    erased_messages = messages.update(
        body=ERASED, media_url="", media_id="", last_error="", webhook_event=None
    )
    WebhookEvent.objects.filter(pk__in=events).delete()
    conversations = Conversation.objects.filter(lead=lead)
    conversations.update(context={}, flow_data={}, last_error="", external_id="", paused_reason="")
    Handoff.objects.filter(conversation__lead=lead).update(note="")
    # Agent runs and campaign recipients belong to apps above this one: reached
    # by label so the layers keep pointing one way. Both may quote the person.
    apps.get_model("agent.AgentRun").objects.filter(conversation__lead=lead).update(
        tool_calls=[], error=""
    )
    apps.get_model("campaigns.CampaignRecipient").objects.filter(lead=lead).update(variables={})
    identities = LeadIdentity.objects.filter(lead=lead).delete()[0]
    Lead.objects.filter(pk=lead.pk).update(
        phone=None,
        name=ERASED,
        email="",
        company="",
        attributes={},
        # Nobody may write to the person again, even if they come back under another id.
        opted_out=True,
        opted_out_at=lead.opted_out_at or timezone.now(),
    )
    return {
        "messages": erased_messages,
        "webhook_events": len(events),
        "identities": identities,
        "conversations": conversations.count(),
    }
