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


class MetricCounter(models.Model):
    """A Prometheus counter kept in the database (see core/metrics.py).

    Sends happen in django-q2 worker processes, often on other machines than
    the web process that serves /metrics; an in-process counter would never
    reach the scrape. One row per (series, labels), incremented atomically.
    """

    name = models.CharField(max_length=100)
    labels = models.CharField(max_length=300, help_text="Canonical JSON of the label set")
    value = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "labels"], name="uniq_metric_counter_series")
        ]

    def __str__(self) -> str:
        return f"{self.name}{self.labels} = {self.value}"
