from django.db import models


class WorkerHeartbeat(models.Model):
    """The last time a django-q2 worker ran the heartbeat task.

    One row per cluster name. /health and /metrics read its age: the seeds'
    incident was a worker that started without errors and never ran a thing.
    """

    cluster = models.CharField(max_length=100, unique=True)
    beat_at = models.DateTimeField()
    host = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    beats = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = "worker heartbeat"

    def __str__(self) -> str:
        return f"{self.cluster} @ {self.beat_at:%Y-%m-%d %H:%M:%S}"
