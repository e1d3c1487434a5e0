from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class WorkerHeartbeat(models.Model):
    """The last time a django-q2 worker ran the heartbeat task.

    One row per cluster name. /health and /metrics read its age: the seeds'
    incident was a worker that started without errors and never ran a thing.
    """

    cluster = models.CharField(_("cluster"), max_length=100, unique=True)
    beat_at = models.DateTimeField(_("last beat at"))
    # Unknown (null) for rows older than the field: an installation running for a while.
    first_beat_at = models.DateTimeField(_("first beat at"), null=True, blank=True)
    host = models.CharField(_("host"), max_length=255, blank=True)
    pid = models.PositiveIntegerField(_("PID"), null=True, blank=True)
    beats = models.PositiveBigIntegerField(_("beats"), default=0)

    class Meta:
        verbose_name = _("worker heartbeat")
        verbose_name_plural = _("worker heartbeats")

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


class AuditEntry(models.Model):
    """One change someone made to data, from the admin, a command, a task or the API.

    Written only through `core.audit.audit_record`; read-only in the admin.
    The runbooks' raw SQL left no trace; every procedure that replaces one
    (reprocess, retry, cancel, block, pause, purge, reveal a secret…) does.
    """

    class Source(models.TextChoices):
        ADMIN = "admin", _("admin")
        COMMAND = "command", _("command")
        TASK = "task", _("task")
        API = "api", _("API")

    at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("who"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_label = models.CharField(
        _("identification"),
        max_length=150,
        blank=True,
        help_text=_("User, command or task; kept if the user is deleted"),
    )
    source = models.CharField(_("source"), max_length=10, choices=Source.choices)
    action = models.CharField(_("action"), max_length=80, db_index=True)
    target = models.CharField(_("target"), max_length=100, blank=True, help_text="app_label.model")
    object_count = models.PositiveIntegerField(_("objects"), default=0)
    object_ids = models.JSONField(_("ids"), default=list, blank=True)
    detail = models.JSONField(_("details"), default=dict, blank=True)

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit")
        ordering = ["-at"]
        indexes = [models.Index(fields=["target", "-at"], name="audit_target_at")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} ({self.object_count})"


class Alert(models.Model):
    """Something wrong that an operator must see: open → acknowledged → resolved.

    One active (open or acknowledged) alert per condition and subject, so a
    condition that stays true for hours is one alert, not one per evaluation.
    Written by `core.alerts.alerts_evaluate`; acknowledged and resolved in the admin.
    """

    class Condition(models.TextChoices):
        OUTBOX_BACKLOG = "outbox_backlog", _("Send queue piling up")
        WORKER_DOWN = "worker_down", _("Worker down (no heartbeat)")
        ERROR_RATE = "error_rate", _("High send error rate")
        NO_RESPONSES = "no_responses", _("No responses during business hours")
        HANDOFF_RATE = "handoff_rate", _("High handoff rate")
        AGENT_SLOW = "agent_slow", _("High agent response time (p95)")
        CHIP_DOWN = "chip_down", _("Chip disconnected, restricted or with its circuit open")

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        ACKNOWLEDGED = "acknowledged", _("Acknowledged")
        RESOLVED = "resolved", _("Resolved")

    ACTIVE = (Status.OPEN, Status.ACKNOWLEDGED)

    condition = models.CharField(_("condition"), max_length=30, choices=Condition.choices)
    subject = models.CharField(
        _("subject"), max_length=100, blank=True, help_text=_("E.g. chip:12; empty = platform")
    )
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.OPEN
    )
    title = models.CharField(_("title"), max_length=200)
    detail = models.TextField(_("detail"), blank=True)
    value = models.FloatField(_("measured value"), null=True, blank=True)
    opened_at = models.DateTimeField(_("opened at"), default=timezone.now)
    last_seen_at = models.DateTimeField(_("last seen at"), default=timezone.now)
    acknowledged_at = models.DateTimeField(_("acknowledged at"), null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("acknowledged by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("resolved by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["condition", "subject"],
                condition=models.Q(status__in=["open", "acknowledged"]),
                name="uniq_active_alert_per_condition_subject",
            )
        ]
        indexes = [models.Index(fields=["status", "-opened_at"], name="alert_status_idx")]
        permissions = [
            ("acknowledge_alert", _("Can acknowledge and resolve alerts")),
            ("dashboard_alert", _("Can view the operations dashboard")),
        ]

    def __str__(self) -> str:
        return f"{self.get_condition_display()} {self.subject}".strip()
