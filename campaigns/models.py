from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

# Weekdays as Python numbers them (Monday = 0); stored as a string of digits.
WEEKDAY_CHOICES = [
    ("0", _("Monday")),
    ("1", _("Tuesday")),
    ("2", _("Wednesday")),
    ("3", _("Thursday")),
    ("4", _("Friday")),
    ("5", _("Saturday")),
    ("6", _("Sunday")),
]


class Campaign(models.Model):
    """An outbound campaign sent through a pool of chips."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        SCHEDULED = "scheduled", _("Scheduled")
        RUNNING = "running", pgettext_lazy("campaign", "Running")
        PAUSED = "paused", _("Paused")
        COMPLETED = "completed", _("Completed")
        CANCELLED = "cancelled", pgettext_lazy("campaign", "Cancelled")

    class Kind(models.TextChoices):
        PROSPECTING = "prospecting", _("Prospecting")
        FOLLOW_UP = "follow_up", _("Follow-up")

    name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(
        _("kind"), max_length=20, choices=Kind.choices, default=Kind.PROSPECTING
    )
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.DRAFT
    )
    message_template = models.TextField(
        _("message"),
        help_text=_(
            "Use {{nome}}, {{empresa}} or any imported column. For variations, "
            "separate the texts with a line holding only ---; each lead always "
            "gets the same variation."
        ),
    )
    chips = models.ManyToManyField(
        "channels.Chip", related_name="campaigns", blank=True, verbose_name=_("chips")
    )
    agent_profile = models.ForeignKey(
        "agent.AgentProfile",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="campaigns",
        verbose_name=_("agent profile"),
        help_text=_("Profile that answers the leads who reply"),
    )
    scheduled_at = models.DateTimeField(_("scheduled start"), null=True, blank=True)
    # The campaign's own send window, on top of each chip's.
    time_zone = models.CharField(_("time zone"), max_length=64, default="America/Sao_Paulo")
    send_weekdays = models.CharField(_("send days"), max_length=7, default="", blank=True)
    send_window_start = models.TimeField(_("window opens"), null=True, blank=True)
    send_window_end = models.TimeField(_("window closes"), null=True, blank=True)
    # Follow-ups: after `follow_up_after_hours` without a reply, the next text.
    follow_up_after_hours = models.PositiveIntegerField(_("follow-up after (hours)"), default=24)
    follow_up_texts = models.TextField(
        _("follow-up texts"),
        blank=True,
        help_text=_(
            "One text per follow-up, separated by a line holding only ---. Empty: no follow-up."
        ),
    )
    started_at = models.DateTimeField(
        pgettext_lazy("campaign", "started at"), null=True, blank=True
    )
    paused_at = models.DateTimeField(pgettext_lazy("campaign", "paused at"), null=True, blank=True)
    paused_reason = models.CharField(_("paused reason"), max_length=200, blank=True)
    finished_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="campaigns",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        indexes = [
            # The scheduler looks for campaigns whose time has come.
            models.Index(
                fields=["scheduled_at"],
                condition=Q(status="scheduled"),
                name="campaign_due_idx",
            )
        ]
        permissions = [
            ("start_campaign", _("Can start and resume campaigns")),
            ("pause_campaign", _("Can pause campaigns")),
            ("cancel_campaign", _("Can cancel campaigns")),
        ]

    def __str__(self) -> str:
        return self.name


class CampaignRecipient(models.Model):
    """One lead in a campaign's audience and what happened to their message."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        QUEUED = "queued", _("Queued")
        SENT = "sent", pgettext_lazy("message", "Sent")
        FAILED = "failed", _("Failed")
        SKIPPED = "skipped", _("Skipped")
        CANCELLED = "cancelled", pgettext_lazy("campaign", "Cancelled")

    class SkipReason(models.TextChoices):
        OPTED_OUT = "opted_out", _("Asked not to receive (opt-out)")
        HUMAN_CONTROLLED = "human_controlled", _("Conversation with a human")
        OPEN_HANDOFF = "open_handoff", _("Open handoff")
        RECENTLY_CONTACTED = "recently_contacted", _("Contacted by another campaign recently")
        NO_PHONE = "no_phone", _("Lead without a phone")

    campaign = models.ForeignKey(
        Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="recipients"
    )
    lead = models.ForeignKey(
        "conversations.Lead",
        verbose_name=_("lead"),
        on_delete=models.CASCADE,
        related_name="campaign_recipients",
    )
    chip = models.ForeignKey(
        "channels.Chip",
        verbose_name=_("chip"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    conversation = models.ForeignKey(
        "conversations.Conversation",
        verbose_name=_("conversation"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    message = models.OneToOneField(
        "conversations.Message",
        verbose_name=_("message"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="campaign_recipient",
    )
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.PENDING
    )
    skip_reason = models.CharField(
        _("skip reason"), max_length=200, blank=True, choices=SkipReason.choices, default=""
    )
    variables = models.JSONField(_("variables"), default=dict, blank=True)
    follow_ups_sent = models.PositiveSmallIntegerField(_("follow-ups sent"), default=0)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["campaign", "id"]
        verbose_name = _("recipient")
        verbose_name_plural = _("recipients")
        constraints = [
            models.UniqueConstraint(fields=["campaign", "lead"], name="uniq_campaign_lead")
        ]
        indexes = [
            models.Index(fields=["campaign", "status"], name="recipient_status_idx"),
            # The failure-rate check reads a campaign's latest settled sends.
            models.Index(fields=["campaign", "-updated_at"], name="recipient_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} → {self.lead}"
