from django.conf import settings
from django.db import models
from django.db.models import Q

from core.phones import validate_e164


class Lead(models.Model):
    """A person the agents talk to, one per E.164 phone."""

    phone = models.CharField(
        max_length=20,
        unique=True,
        null=True,
        blank=True,
        validators=[validate_e164],
        help_text="E.164; empty while WhatsApp only gave an anonymous @lid id",
    )
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    company = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=100, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    opted_out = models.BooleanField(default=False)
    opted_out_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"], name="lead_created_idx"),
            models.Index(fields=["name"], name="lead_name_idx"),
        ]

    def __str__(self) -> str:
        label = self.name or "Lead"
        return f"{label} ({self.phone})" if self.phone else f"{label} #{self.pk}"


class Conversation(models.Model):
    """A lead's thread on one chip. At most one open per (lead, chip)."""

    class Status(models.TextChoices):
        OPEN = "open", "Aberta"
        CLOSED = "closed", "Encerrada"

    class ControlledBy(models.TextChoices):
        AGENT = "agent", "Agente"
        HUMAN = "human", "Humano"

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="conversations")
    chip = models.ForeignKey(
        "channels.Chip", on_delete=models.PROTECT, related_name="conversations"
    )
    agent_profile = models.ForeignKey(
        "agent.AgentProfile",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conversations",
        help_text="Overrides the chip's profile for this conversation",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    controlled_by = models.CharField(
        max_length=10, choices=ControlledBy.choices, default=ControlledBy.AGENT
    )
    agent_paused = models.BooleanField(default=False)
    paused_reason = models.CharField(max_length=200, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    flow_step = models.CharField(max_length=100, blank=True)
    flow_data = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)
    last_message_at = models.DateTimeField(null=True, blank=True)
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    last_outbound_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    external_id = models.CharField(max_length=100, blank=True, help_text="Chatwoot conversation id")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_message_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["lead", "chip"],
                condition=Q(status="open"),
                name="uniq_open_conversation_per_lead_chip",
            )
        ]
        indexes = [
            models.Index(fields=["-last_message_at"], name="conv_last_message_idx"),
            # Stuck-conversation recovery scans agent-controlled open threads by age.
            models.Index(
                fields=["last_inbound_at"],
                condition=Q(status="open", controlled_by="agent", agent_paused=False),
                name="conv_agent_inbound_idx",
            ),
        ]
        permissions = [("reprocess_conversation", "Pode reprocessar a última mensagem do lead")]

    def __str__(self) -> str:
        return f"Conversa #{self.pk} {self.lead} via {self.chip.name}"


class Message(models.Model):
    """Every WhatsApp message, inbound and outbound.

    Outbound rows are the outbox: they wait as `queued` until the sender
    claims them. An agent reply points at the inbound message it answers
    (`reply_to`), which is how reprocessing avoids a second reply.
    """

    class Direction(models.TextChoices):
        INBOUND = "in", "Recebida"
        OUTBOUND = "out", "Enviada"

    class Kind(models.TextChoices):
        TEXT = "text", "Texto"
        IMAGE = "image", "Imagem"
        AUDIO = "audio", "Áudio"
        VIDEO = "video", "Vídeo"
        DOCUMENT = "document", "Documento"
        STICKER = "sticker", "Figurinha"
        LOCATION = "location", "Localização"
        CONTACT = "contact", "Contato"
        OTHER = "other", "Outro"

    class Status(models.TextChoices):
        # inbound
        RECEIVED = "received", "Recebida"
        PROCESSED = "processed", "Processada"
        IGNORED = "ignored", "Ignorada"
        # outbound
        QUEUED = "queued", "Na fila"
        SENDING = "sending", "Enviando"
        SENT = "sent", "Enviada"
        DELIVERED = "delivered", "Entregue"
        READ = "read", "Lida"
        FAILED = "failed", "Falhou"
        CANCELLED = "cancelled", "Cancelada"

    class Purpose(models.TextChoices):
        INBOUND = "inbound", "Mensagem do lead"
        REPLY = "reply", "Resposta do agente"
        HUMAN = "human", "Resposta humana"
        CAMPAIGN = "campaign", "Campanha"
        FOLLOW_UP = "follow_up", "Follow-up"
        SYSTEM = "system", "Sistema"

    class Outcome(models.TextChoices):
        SENT = "sent", "SENT"
        FAILED_PROVIDER = "failed_provider", "FAILED_PROVIDER"
        FAILED_PERMANENT = "failed_permanent", "FAILED_PERMANENT"
        FAILED_CIRCUIT_OPEN = "failed_circuit_open", "FAILED_CIRCUIT_OPEN"
        CANCELLED = "cancelled", "CANCELLED"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    chip = models.ForeignKey("channels.Chip", on_delete=models.PROTECT, related_name="messages")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.TEXT)
    body = models.TextField(blank=True)
    media_url = models.URLField(max_length=2000, blank=True)
    media_id = models.CharField(max_length=255, blank=True)
    media_mime_type = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices)
    outcome = models.CharField(max_length=30, choices=Outcome.choices, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    reply_to = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replies"
    )
    campaign = models.ForeignKey(
        "campaigns.Campaign",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
    )
    webhook_event = models.ForeignKey(
        "channels.WebhookEvent",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
    )
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # Higher first: a reply to a lead who just wrote beats a campaign message.
    priority = models.SmallIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    provider_timestamp = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["chip", "provider_message_id"],
                condition=Q(direction="in") & ~Q(provider_message_id=""),
                name="uniq_inbound_message_per_chip",
            ),
            models.CheckConstraint(
                condition=(Q(direction="in", status__in=["received", "processed", "ignored"]))
                | (
                    Q(direction="out")
                    & Q(
                        status__in=[
                            "queued",
                            "sending",
                            "sent",
                            "delivered",
                            "read",
                            "failed",
                            "cancelled",
                        ]
                    )
                ),
                name="message_status_matches_direction",
            ),
        ]
        indexes = [
            # The outbox claim: due queued messages, replies first.
            models.Index(
                fields=["-priority", "next_attempt_at"],
                condition=Q(status="queued"),
                name="outbox_due_idx",
            ),
            # The per-chip claim: does this chip have due messages, and which
            # first. Same order as the claim's ORDER BY, so it reads the first
            # rows in order instead of sorting a campaign's whole queue on
            # every claim.
            models.Index(
                fields=["chip", "-priority", "next_attempt_at", "id"],
                condition=Q(status="queued"),
                name="outbox_chip_due_idx",
            ),
            # Messages left in `sending` by a dead worker, found by lease expiry.
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status="sending"),
                name="outbox_lease_idx",
            ),
            # Status webhooks name the outbound message by provider id.
            models.Index(
                fields=["chip", "provider_message_id"],
                condition=Q(direction="out") & ~Q(provider_message_id=""),
                name="outbound_provider_id_idx",
            ),
            models.Index(fields=["conversation", "created_at"], name="msg_conversation_idx"),
            models.Index(fields=["-created_at"], name="msg_created_idx"),
            models.Index(fields=["direction", "status", "-created_at"], name="msg_status_idx"),
        ]
        permissions = [
            ("retry_message", "Pode reenviar mensagens da fila"),
            ("cancel_message", "Pode cancelar mensagens da fila"),
            ("reprocess_message", "Pode reprocessar mensagens recebidas (resposta do agente)"),
        ]

    def __str__(self) -> str:
        arrow = "←" if self.direction == self.Direction.INBOUND else "→"
        preview = (self.body or self.get_kind_display())[:40]
        return f"{arrow} {preview}"


class Handoff(models.Model):
    """A conversation handed to a human SDR. At most one open per conversation."""

    class Reason(models.TextChoices):
        LEAD_REQUEST = "lead_request", "Lead pediu um humano"
        AGENT_DECISION = "agent_decision", "Agente decidiu"
        AGENT_FAILURE = "agent_failure", "Falha do agente"
        CHATWOOT_LABEL = "chatwoot_label", "Etiqueta no Chatwoot"
        HUMAN_REPLIED = "human_replied", "Humano respondeu pelo telefone"
        OPS = "ops", "Operação"

    class Status(models.TextChoices):
        OPEN = "open", "Aberto"
        ACCEPTED = "accepted", "Assumido"
        RESOLVED = "resolved", "Devolvido ao agente"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="handoffs"
    )
    reason = models.CharField(max_length=30, choices=Reason.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    note = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="handoffs_requested",
    )
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="handoffs_assigned",
    )
    notified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(status__in=["open", "accepted"]),
                name="uniq_active_handoff_per_conversation",
            )
        ]
        indexes = [models.Index(fields=["status", "-created_at"], name="handoff_status_idx")]

    def __str__(self) -> str:
        return f"Handoff #{self.pk} ({self.get_status_display()})"


class LeadIdentity(models.Model):
    """An address a provider used for a lead: a phone JID, a Meta wa_id, an anonymous @lid.

    WhatsApp increasingly hides the phone behind an `@lid` id; keeping every
    address makes a lead first seen as `@lid` and later by phone one lead.
    """

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="identities")
    provider = models.CharField(max_length=20)
    external_id = models.CharField(max_length=255)
    is_lid = models.BooleanField(default=False)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "lead identities"
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "external_id"], name="uniq_lead_identity_per_provider"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.external_id}"


class DeliveryAttempt(models.Model):
    """One try to hand an outbound message to the provider, kept for the ops."""

    class Outcome(models.TextChoices):
        SENT = "sent", "Enviada"
        TRANSIENT = "transient", "Erro transitório"
        RATE_LIMITED = "rate_limited", "Limite de taxa"
        AUTH = "auth", "Autenticação"
        INVALID_RECIPIENT = "invalid_recipient", "Destinatário inválido"
        RESTRICTED = "restricted", "Número restrito"
        PERMANENT = "permanent", "Erro permanente"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attempts_log")
    chip = models.ForeignKey("channels.Chip", on_delete=models.CASCADE, related_name="+")
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    error = models.TextField(blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["message", "started_at"], name="attempt_message_idx"),
            models.Index(fields=["chip", "-started_at"], name="attempt_chip_idx"),
        ]

    def __str__(self) -> str:
        return f"attempt #{self.pk} {self.outcome}"
