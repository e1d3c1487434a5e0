"""Slack notices for handoffs: when one opens, and again when nobody took it in time.

Never in the caller's way: the first notice is a django-q2 task enqueued
after the handoff's commit; a notice Slack did not take is retried by the
periodic handoff sweep (every minute, for a day). A
claim on `notified_at` / `reminded_at` keeps two workers from sending one
notice twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from conversations.models import Handoff, Message
from conversations.ownership import ACTIVE_HANDOFF
from core.alerts import slack_post
from core.brokers import enqueue_nudge

logger = logging.getLogger(__name__)

NOTIFY_TASK = "conversations.tasks.handoff_notify"
LAST_MESSAGES = 3
RETRY_WINDOW = timedelta(hours=24)


def handoff_notify_enqueue(handoff_id: int, event: str) -> None:
    """Handoff listener (called after commit): queue the opening notice."""
    if event != "opened" or not settings.SLACK_WEBHOOK_URL:
        return
    # The sweep retries a lost one; the handoff itself is already saved.
    enqueue_nudge(
        NOTIFY_TASK,
        handoff_id,
        group="handoff-notify",
        failure=f"handoff {handoff_id}: could not enqueue the Slack notice",
    )


def handoff_notify(*, handoff_id: int, reminder: bool = False) -> bool:
    """Post the notice (or the reminder) for one handoff once. True when Slack took it."""
    field = "reminded_at" if reminder else "notified_at"
    now = timezone.now()
    claimed = Handoff.objects.filter(
        pk=handoff_id, status__in=ACTIVE_HANDOFF, **{f"{field}__isnull": True}
    ).update(**{field: now})
    if not claimed:
        return False
    handoff = Handoff.objects.select_related("conversation__lead", "conversation__chip").get(
        pk=handoff_id
    )
    ok = slack_post(_text(handoff, reminder=reminder), operation="handoff")
    if not ok:
        # Let the sweep try again.
        Handoff.objects.filter(pk=handoff_id).update(**{field: None})
    return ok


def handoff_notices_due(*, now: datetime | None = None) -> dict[str, int]:
    """The sweep's part: notices Slack refused, and reminders for handoffs nobody took."""
    if not settings.SLACK_WEBHOOK_URL:
        return {"notified": 0, "reminded": 0}
    now = now or timezone.now()
    recent = Q(created_at__gte=now - RETRY_WINDOW)
    unsent = Handoff.objects.filter(recent, status__in=ACTIVE_HANDOFF, notified_at__isnull=True)
    notified = sum(handoff_notify(handoff_id=pk) for pk in unsent.values_list("pk", flat=True))
    reminded = 0
    minutes = settings.HANDOFF_REMIND_MINUTES
    if minutes > 0:
        waiting = Handoff.objects.filter(
            recent,
            status=Handoff.Status.OPEN,
            notified_at__isnull=False,
            reminded_at__isnull=True,
            created_at__lte=now - timedelta(minutes=minutes),
        )
        reminded = sum(
            handoff_notify(handoff_id=pk, reminder=True)
            for pk in waiting.values_list("pk", flat=True)
        )
    return {"notified": notified, "reminded": reminded}


def _text(handoff: Handoff, *, reminder: bool) -> str:
    conversation = handoff.conversation
    lead = conversation.lead
    if reminder:
        waited = gettext("Nobody took over in %(minutes)d min") % {
            "minutes": settings.HANDOFF_REMIND_MINUTES
        }
        title = f":alarm_clock: *{waited}*"
    else:
        title = f":raising_hand: *{gettext('Conversation handed over to a human')}*"
    lead_label = gettext("Lead")
    reason_label = gettext("Reason")
    name = lead.name or gettext("no name")
    phone = lead.phone or gettext("no phone")
    lines = [
        title,
        f"*{lead_label}:* {name} ({phone}) · chip {conversation.chip.name}",
        f"*{reason_label}:* {handoff.get_reason_display()}"
        + (f" — {handoff.note[:300]}" if handoff.note else ""),
    ]
    recent = list(
        Message.objects.filter(conversation=conversation).order_by("-created_at", "-id")[
            :LAST_MESSAGES
        ]
    )
    for message in reversed(recent):
        who = lead_label if message.direction == Message.Direction.INBOUND else gettext("Us")
        lines.append(f"> {who}: {(message.body or message.get_kind_display())[:200]}")
    links = []
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    if base:
        chat = reverse("admin:conversations_conversation_chat", args=[conversation.pk])
        links.append(f"<{base}{chat}|{gettext('Open in the admin')}>")
    if settings.CHATWOOT_URL and settings.CHATWOOT_ACCOUNT_ID and conversation.external_id:
        chatwoot = (
            f"{settings.CHATWOOT_URL.rstrip('/')}/app/accounts/{settings.CHATWOOT_ACCOUNT_ID}"
            f"/conversations/{conversation.external_id}"
        )
        links.append(f"<{chatwoot}|{gettext('Open in Chatwoot')}>")
    if links:
        lines.append(" · ".join(links))
    return "\n".join(lines)
