from django.conf import settings
from django.db import models
from django.db.models import Q


class Campaign(models.Model):
    """An outbound campaign sent through a pool of chips."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Rascunho"
        SCHEDULED = "scheduled", "Agendada"
        RUNNING = "running", "Em andamento"
        PAUSED = "paused", "Pausada"
        COMPLETED = "completed", "Concluída"
        CANCELLED = "cancelled", "Cancelada"

    class Kind(models.TextChoices):
        PROSPECTING = "prospecting", "Prospecção"
        FOLLOW_UP = "follow_up", "Follow-up"

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.PROSPECTING)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    message_template = models.TextField(
        help_text="Text sent to each lead; {name} and other lead fields are filled in"
    )
    chips = models.ManyToManyField("channels.Chip", related_name="campaigns", blank=True)
    agent_profile = models.ForeignKey(
        "agent.AgentProfile",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="campaigns",
        help_text="Profile that answers the leads who reply",
    )
    scheduled_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_reason = models.CharField(max_length=200, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="campaigns",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The scheduler looks for campaigns whose time has come.
            models.Index(
                fields=["scheduled_at"],
                condition=Q(status="scheduled"),
                name="campaign_due_idx",
            )
        ]

    def __str__(self) -> str:
        return self.name


class CampaignRecipient(models.Model):
    """One lead in a campaign's audience and what happened to their message."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pendente"
        QUEUED = "queued", "Na fila"
        SENT = "sent", "Enviada"
        FAILED = "failed", "Falhou"
        SKIPPED = "skipped", "Ignorado"
        CANCELLED = "cancelled", "Cancelada"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="recipients")
    lead = models.ForeignKey(
        "conversations.Lead", on_delete=models.CASCADE, related_name="campaign_recipients"
    )
    chip = models.ForeignKey(
        "channels.Chip", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    message = models.OneToOneField(
        "conversations.Message",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="campaign_recipient",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    skip_reason = models.CharField(max_length=200, blank=True)
    variables = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["campaign", "id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "lead"], name="uniq_campaign_lead")
        ]
        indexes = [models.Index(fields=["campaign", "status"], name="recipient_status_idx")]

    def __str__(self) -> str:
        return f"{self.campaign} → {self.lead}"
