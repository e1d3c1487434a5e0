import os
import socket

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from core.models import WorkerHeartbeat


def heartbeat_record(*, cluster: str | None = None) -> WorkerHeartbeat:
    """Record that a worker of `cluster` is alive and executing tasks."""
    cluster = cluster or settings.Q_CLUSTER["name"]
    now = timezone.now()
    defaults = {"beat_at": now, "host": socket.gethostname(), "pid": os.getpid()}
    updated = WorkerHeartbeat.objects.filter(cluster=cluster).update(
        beats=F("beats") + 1, **defaults
    )
    if not updated:
        WorkerHeartbeat.objects.get_or_create(
            cluster=cluster, defaults={**defaults, "beats": 1, "first_beat_at": now}
        )
    return WorkerHeartbeat.objects.get(cluster=cluster)
