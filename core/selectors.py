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
