import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from channels import redaction
from channels.provider_urls import UnsafeProviderURL, provider_url_check
from core.fields import SecretField
from core.phones import validate_e164


def new_webhook_key() -> str:
    """An unguessable per-chip secret for the webhook URL.

    Evolution, Z-API and W-API sign nothing, so the URL itself is the credential
    (as Chatwoot's API-channel URLs are).
    """
    return secrets.token_urlsafe(32)


class Provider(models.TextChoices):
    META = "meta", "Meta Cloud API"
    EVOLUTION = "evolution", "Evolution API"
    ZAPI = "zapi", "Z-API"
    WAPI = "wapi", "W-API"
    SANDBOX = "sandbox", _("Sandbox")


class Chip(models.Model):
    """One WhatsApp number on one provider, with its pacing and circuit state."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting for connection")
        CONNECTED = "connected", _("Connected")
        DISCONNECTED = "disconnected", _("Disconnected")
        RESTRICTED = "restricted", _("Restricted")
        BANNED = "banned", _("Banned")

    class CircuitState(models.TextChoices):
        CLOSED = "closed", _("Closed")
        OPEN = "open", _("Open")
        HALF_OPEN = "half_open", _("Half-open (probing)")

    name = models.CharField(_("name"), max_length=100)
    provider = models.CharField(_("provider"), max_length=20, choices=Provider.choices)
    phone = models.CharField(
        _("phone"),
        max_length=20,
        null=True,
        blank=True,
        unique=True,
        validators=[validate_e164],
        help_text=_("E.164, e.g. +5511999990000"),
    )
    webhook_key = models.CharField(
        _("webhook key"), max_length=64, unique=True, default=new_webhook_key, editable=False
    )
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.PENDING
    )
    status_changed_at = models.DateTimeField(_("status changed at"), null=True, blank=True)
    agent_profile = models.ForeignKey(
        "agent.AgentProfile",
        verbose_name=_("agent profile"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="chips",
    )

    # Provider connection. Which fields matter depends on the provider; see
    # each adapter in channels/providers/.
    api_base_url = models.URLField(
        _("API base URL"), blank=True, help_text=_("Evolution/W-API server URL")
    )
    instance_id = models.CharField(
        _("instance id"),
        max_length=200,
        blank=True,
        help_text=_("Meta phone_number_id, Evolution instance name, Z-API/W-API instance id"),
    )
    # Credentials: encrypted at rest, masked in the admin, revealed only through
    # the audited "Revelar credenciais" page (channels/credentials.py).
    api_token = SecretField(
        _("API token"), max_length=500, blank=True, help_text=_("Token used to send")
    )
    client_token = SecretField(
        _("client token"),
        max_length=200,
        blank=True,
        help_text=_("Z-API account security token (Client-Token)"),
    )
    app_secret = SecretField(
        _("app secret"),
        max_length=200,
        blank=True,
        help_text=_("Meta app secret: verifies X-Hub-Signature-256"),
    )
    verify_token = SecretField(
        _("verify token"),
        max_length=200,
        blank=True,
        help_text=_("Meta webhook verify token (GET handshake)"),
    )
    webhook_token = SecretField(
        _("webhook token"),
        max_length=500,
        blank=True,
        help_text=_("Optional extra webhook secret: Evolution apikey/JWT key, Z-API z-api-token"),
    )

    # Pacing.
    time_zone = models.CharField(_("time zone"), max_length=64, default="America/Sao_Paulo")
    min_interval_seconds = models.PositiveIntegerField(_("minimum interval (s)"), default=30)
    jitter_seconds = models.PositiveIntegerField(_("jitter (s)"), default=15)
    daily_cap = models.PositiveIntegerField(_("daily cap"), default=200)
    warmup_days = models.PositiveIntegerField(
        _("warmup days"),
        default=14,
        help_text=_("Days over which the daily cap ramps up for a new number"),
    )
    warmup_started_on = models.DateField(_("warmup started on"), null=True, blank=True)
    send_window_start = models.TimeField(_("send window start"), null=True, blank=True)
    send_window_end = models.TimeField(_("send window end"), null=True, blank=True)
    can_prospect = models.BooleanField(_("can prospect"), default=True)
    can_follow_up = models.BooleanField(_("can follow up"), default=True)
    last_sent_at = models.DateTimeField(_("last sent at"), null=True, blank=True)
    # Free for any send (busy while one is in flight, or after a provider's 429).
    next_send_at = models.DateTimeField(_("next send at"), null=True, blank=True)
    # The minimum interval with jitter, counted between business-initiated sends.
    next_proactive_at = models.DateTimeField(_("next proactive at"), null=True, blank=True)
    # The replies-per-minute ceiling (OUTBOX_REPLY_MAX_PER_MINUTE), one fixed window.
    reply_window_started_at = models.DateTimeField(
        _("reply window started at"), null=True, blank=True
    )
    reply_window_count = models.PositiveIntegerField(_("reply window count"), default=0)

    # Circuit breaker, shared by every worker through the database.
    circuit_state = models.CharField(
        _("circuit state"), max_length=20, choices=CircuitState.choices, default=CircuitState.CLOSED
    )
    consecutive_failures = models.PositiveIntegerField(_("consecutive failures"), default=0)
    circuit_opened_at = models.DateTimeField(_("circuit opened at"), null=True, blank=True)
    circuit_retry_at = models.DateTimeField(_("circuit retry at"), null=True, blank=True)
    circuit_open_count = models.PositiveIntegerField(_("circuit open count"), default=0)

    # Health as the provider reports it.
    quality_rating = models.CharField(_("quality rating"), max_length=20, blank=True)
    health = models.JSONField(_("health"), default=dict, blank=True)
    qr_code = models.TextField(_("QR code"), blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True)

    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("chip")
        verbose_name_plural = _("chips")
        ordering = ["name"]
        indexes = [models.Index(fields=["provider", "status"], name="chip_provider_status_idx")]
        permissions = [
            ("block_chip", _("Can block and unblock chips")),
            ("reset_circuit_chip", _("Can reset chips' circuit breaker")),
            ("reveal_credentials_chip", _("Can reveal chips' credentials")),
            ("rotate_webhook_key_chip", _("Can rotate chips' webhook key")),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.phone or self.get_provider_display()})"

    def clean(self) -> None:
        super().clean()
        if self.api_base_url:
            # The worker POSTs to this URL with the chip's credentials: never
            # to an internal address (channels/provider_urls.py).
            try:
                provider_url_check(self.api_base_url)
            except UnsafeProviderURL as exc:
                raise ValidationError({"api_base_url": str(exc)}) from exc


class WebhookEvent(models.Model):
    """A webhook delivery as received, the unit of inbound work.

    Stored before anything else happens; normalization runs later from this
    row, so a lost broker task or a crash loses nothing.
    """

    class Status(models.TextChoices):
        RECEIVED = "received", _("Received")
        PROCESSED = "processed", _("Processed")
        IGNORED = "ignored", _("Ignored")
        INVALID = "invalid", _("Invalid")
        FAILED = "failed", _("Failed")

    chip = models.ForeignKey(
        Chip, verbose_name=_("chip"), on_delete=models.CASCADE, related_name="webhook_events"
    )
    provider = models.CharField(_("provider"), max_length=20, choices=Provider.choices)
    event_type = models.CharField(_("event type"), max_length=100, blank=True)
    dedupe_key = models.CharField(
        _("dedupe key"),
        max_length=255,
        blank=True,
        help_text=_("Provider delivery/message id; a retried delivery has the same key"),
    )
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    raw_body = models.TextField(
        _("raw body"), blank=True, help_text=_("Kept only when the body is not JSON")
    )
    headers = models.JSONField(_("headers"), default=dict, blank=True)
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.RECEIVED
    )
    error = models.TextField(_("error"), blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    received_at = models.DateTimeField(_("received at"), auto_now_add=True)
    # When its processing task was last queued, and when a worker last took it
    # up: the sweep re-queues only a task that was lost (taken up by a worker
    # that died, or never taken up for long), never one still waiting in line.
    queued_at = models.DateTimeField(_("queued at"), default=timezone.now)
    claimed_at = models.DateTimeField(_("claimed at"), null=True, blank=True)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("webhook event")
        verbose_name_plural = _("webhook events")
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["chip", "dedupe_key"],
                condition=~Q(dedupe_key=""),
                name="uniq_webhook_event_per_chip_dedupe_key",
            )
        ]
        indexes = [
            models.Index(fields=["-received_at"], name="webhook_received_idx"),
            # The sweep that finds events whose task was lost.
            models.Index(
                fields=["queued_at"],
                condition=Q(status="received"),
                name="webhook_pending_idx",
            ),
            models.Index(fields=["status", "-received_at"], name="webhook_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.event_type or '?'} #{self.pk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        update_fields = kwargs.get("update_fields")
        if update_fields is None or set(update_fields) & set(redaction.REDACTED_FIELDS):
            redaction.webhook_event_redact(self)
        super().save(*args, **kwargs)
