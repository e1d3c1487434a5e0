import secrets

from django.db import models
from django.db.models import Q

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
    SANDBOX = "sandbox", "Sandbox"


class Chip(models.Model):
    """One WhatsApp number on one provider, with its pacing and circuit state."""

    class Status(models.TextChoices):
        PENDING = "pending", "Aguardando conexão"
        CONNECTED = "connected", "Conectado"
        DISCONNECTED = "disconnected", "Desconectado"
        RESTRICTED = "restricted", "Restrito"
        BANNED = "banned", "Banido"

    class CircuitState(models.TextChoices):
        CLOSED = "closed", "Fechado"
        OPEN = "open", "Aberto"
        HALF_OPEN = "half_open", "Meio-aberto (sondando)"

    name = models.CharField(max_length=100)
    provider = models.CharField(max_length=20, choices=Provider.choices)
    phone = models.CharField(
        max_length=20,
        null=True,
        blank=True,
        unique=True,
        validators=[validate_e164],
        help_text="E.164, e.g. +5511999990000",
    )
    webhook_key = models.CharField(
        max_length=64, unique=True, default=new_webhook_key, editable=False
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    agent_profile = models.ForeignKey(
        "agent.AgentProfile",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="chips",
    )

    # Provider connection. Which fields matter depends on the provider; see
    # each adapter in channels/providers/.
    api_base_url = models.URLField(blank=True, help_text="Evolution/W-API server URL")
    instance_id = models.CharField(
        max_length=200,
        blank=True,
        help_text="Meta phone_number_id, Evolution instance name, Z-API/W-API instance id",
    )
    api_token = models.CharField(max_length=500, blank=True, help_text="Token used to send")
    client_token = models.CharField(
        max_length=200, blank=True, help_text="Z-API account security token (Client-Token)"
    )
    app_secret = models.CharField(
        max_length=200, blank=True, help_text="Meta app secret: verifies X-Hub-Signature-256"
    )
    verify_token = models.CharField(
        max_length=200, blank=True, help_text="Meta webhook verify token (GET handshake)"
    )
    webhook_token = models.CharField(
        max_length=500,
        blank=True,
        help_text="Optional extra webhook secret: Evolution apikey/JWT key, Z-API z-api-token",
    )

    # Pacing.
    time_zone = models.CharField(max_length=64, default="America/Sao_Paulo")
    min_interval_seconds = models.PositiveIntegerField(default=30)
    jitter_seconds = models.PositiveIntegerField(default=15)
    daily_cap = models.PositiveIntegerField(default=200)
    warmup_days = models.PositiveIntegerField(
        default=14, help_text="Days over which the daily cap ramps up for a new number"
    )
    warmup_started_on = models.DateField(null=True, blank=True)
    send_window_start = models.TimeField(null=True, blank=True)
    send_window_end = models.TimeField(null=True, blank=True)
    can_prospect = models.BooleanField(default=True)
    can_follow_up = models.BooleanField(default=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    next_send_at = models.DateTimeField(null=True, blank=True)

    # Circuit breaker, shared by every worker through the database.
    circuit_state = models.CharField(
        max_length=20, choices=CircuitState.choices, default=CircuitState.CLOSED
    )
    consecutive_failures = models.PositiveIntegerField(default=0)
    circuit_opened_at = models.DateTimeField(null=True, blank=True)
    circuit_retry_at = models.DateTimeField(null=True, blank=True)
    circuit_open_count = models.PositiveIntegerField(default=0)

    # Health as the provider reports it.
    quality_rating = models.CharField(max_length=20, blank=True)
    health = models.JSONField(default=dict, blank=True)
    qr_code = models.TextField(blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["provider", "status"], name="chip_provider_status_idx")]
        permissions = [
            ("block_chip", "Pode bloquear e desbloquear chips"),
            ("reset_circuit_chip", "Pode reiniciar o circuit breaker de chips"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.phone or self.get_provider_display()})"


class WebhookEvent(models.Model):
    """A webhook delivery as received, the unit of inbound work.

    Stored before anything else happens; normalization runs later from this
    row, so a lost broker task or a crash loses nothing.
    """

    class Status(models.TextChoices):
        RECEIVED = "received", "Recebido"
        PROCESSED = "processed", "Processado"
        IGNORED = "ignored", "Ignorado"
        INVALID = "invalid", "Inválido"
        FAILED = "failed", "Falhou"

    chip = models.ForeignKey(Chip, on_delete=models.CASCADE, related_name="webhook_events")
    provider = models.CharField(max_length=20, choices=Provider.choices)
    event_type = models.CharField(max_length=100, blank=True)
    dedupe_key = models.CharField(
        max_length=255,
        blank=True,
        help_text="Provider delivery/message id; a retried delivery has the same key",
    )
    payload = models.JSONField(default=dict, blank=True)
    raw_body = models.TextField(blank=True, help_text="Kept only when the body is not JSON")
    headers = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RECEIVED)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
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
                fields=["received_at"],
                condition=Q(status="received"),
                name="webhook_pending_idx",
            ),
            models.Index(fields=["status", "-received_at"], name="webhook_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.event_type or '?'} #{self.pk}"
