from datetime import timedelta
from typing import TypedDict

from django.conf import settings
from django.db.models import Count, Min, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.models import WorkerHeartbeat


def heartbeat_age_seconds(*, cluster: str | None = None) -> float | None:
    """Seconds since the cluster's last heartbeat; None if it never beat."""
    cluster = cluster or settings.Q_CLUSTER["name"]
    beat_at = (
        WorkerHeartbeat.objects.filter(cluster=cluster).values_list("beat_at", flat=True).first()
    )
    if beat_at is None:
        return None
    return max(0.0, (timezone.now() - beat_at).total_seconds())


def installation_is_new() -> bool:
    """The default cluster's first beat is younger than HEARTBEAT_STALE_SECONDS.

    As long as a running cluster gets between beats: what a cluster that has
    just started gets to beat for the first time. False when it never beat or
    beat before first beats were kept (an installation running for a while).
    """
    first_beat = (
        WorkerHeartbeat.objects.filter(cluster=settings.Q_CLUSTER["name"])
        .values_list("first_beat_at", flat=True)
        .first()
    )
    if first_beat is None:
        return False
    return (timezone.now() - first_beat).total_seconds() <= settings.HEARTBEAT_STALE_SECONDS


def heartbeat_stale(age: float | None) -> bool:
    """A cluster that never beat, or not within HEARTBEAT_STALE_SECONDS, is down."""
    return age is None or age > settings.HEARTBEAT_STALE_SECONDS


class OutboxBacklog(TypedDict):
    pending_messages: int
    oldest_pending_seconds: float | None


def outbox_backlog() -> OutboxBacklog:
    """Outbound messages waiting to leave, and how long the oldest due one waited."""
    from conversations.models import Message

    now = timezone.now()
    # A message scheduled for later is not late; its wait starts when it is due.
    due_since = Coalesce("next_attempt_at", "created_at")
    stats = Message.objects.filter(
        status__in=[Message.Status.QUEUED, Message.Status.SENDING]
    ).aggregate(
        pending=Count("id"),
        oldest=Min(due_since, filter=Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)),
    )
    oldest = stats["oldest"]
    return {
        "pending_messages": stats["pending"],
        "oldest_pending_seconds": round((now - oldest).total_seconds(), 1) if oldest else None,
    }


class ChatwootBacklog(TypedDict):
    configured: bool
    pending: int
    oldest_pending_seconds: float | None
    failed_24h: int
    retry_at: str | None


def chatwoot_backlog() -> ChatwootBacklog:
    """Writes waiting for Chatwoot (conversations.chatwoot_mirror): count, oldest, failed, retry."""
    from conversations.models import ChatwootBreaker, ChatwootMirror

    now = timezone.now()
    rows = ChatwootMirror.objects
    stats = rows.filter(state__in=["pending", "sending"]).aggregate(
        pending=Count("id"), oldest=Min("created_at")
    )
    retry_at = (
        ChatwootBreaker.objects.filter(retry_at__gt=now, failures__gt=0)
        .values_list("retry_at", flat=True)
        .first()
    )
    oldest = stats["oldest"]
    return {
        "configured": bool(
            settings.CHATWOOT_URL
            and settings.CHATWOOT_API_TOKEN
            and settings.CHATWOOT_ACCOUNT_ID
            and settings.CHATWOOT_INBOX_ID
        ),
        "pending": stats["pending"],
        "oldest_pending_seconds": round((now - oldest).total_seconds(), 1) if oldest else None,
        "failed_24h": rows.filter(
            state="failed", created_at__gte=now - timedelta(hours=24)
        ).count(),
        "retry_at": retry_at.isoformat() if retry_at else None,
    }
