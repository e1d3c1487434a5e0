from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from core.phones import validate_e164


class Lead(models.Model):
    """A person the agents talk to, one per E.164 phone."""

    phone = models.CharField(
        _("phone"),
        max_length=20,
        unique=True,
        null=True,
        blank=True,
        validators=[validate_e164],
        help_text=_("E.164; empty while WhatsApp only gave an anonymous @lid id"),
    )
    name = models.CharField(_("name"), max_length=200, blank=True)
    email = models.EmailField(_("email"), blank=True)
    company = models.CharField(_("company"), max_length=200, blank=True)
    source = models.CharField(_("source"), max_length=100, blank=True)
    attributes = models.JSONField(_("attributes"), default=dict, blank=True)
    opted_out = models.BooleanField(_("opted out"), default=False)
    opted_out_at = models.DateTimeField(_("opted out at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("lead")
        verbose_name_plural = _("leads")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"], name="lead_created_idx"),
            models.Index(fields=["name"], name="lead_name_idx"),
        ]
        permissions = [("anonymize_lead", _("Can anonymize leads (data deletion request)"))]

    def __str__(self) -> str:
        label = self.name or "Lead"
        return f"{label} ({self.phone})" if self.phone else f"{label} #{self.pk}"


class Conversation(models.Model):
    """A lead's thread on one chip. At most one open per (lead, chip)."""

    class Status(models.TextChoices):
        OPEN = "open", pgettext_lazy("conversation", "Open")
        CLOSED = "closed", pgettext_lazy("conversation", "Closed")

    class ControlledBy(models.TextChoices):
        """The conversation's one owner; changed only by `conversations.ownership`."""

        AGENT = "agent", _("Agent")
        HUMAN = "human", _("Human (SDR)")
        PAUSED = "paused", _("Agent paused")
        CLOSED = "closed", pgettext_lazy("conversation", "Closed")

    lead = models.ForeignKey(
        Lead, verbose_name=_("lead"), on_delete=models.CASCADE, related_name="conversations"
    )
    chip = models.ForeignKey(
        "channels.Chip",
        verbose_name=_("chip"),
        on_delete=models.PROTECT,
        related_name="conversations",
    )
    agent_profile = models.ForeignKey(
        "agent.AgentProfile",
        verbose_name=_("agent profile"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conversations",
        help_text=_("Overrides the chip's profile for this conversation"),
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.OPEN
    )
    controlled_by = models.CharField(
        _("owner"), max_length=10, choices=ControlledBy.choices, default=ControlledBy.AGENT
    )
    owner_changed_at = models.DateTimeField(_("owner since"), null=True, blank=True)
    owner_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner set by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    owner_reason = models.CharField(_("reason for the owner change"), max_length=200, blank=True)
    # A human takeover returns to the agent after this (HUMAN_TAKEOVER_QUIET_MINUTES);
    # every human message pushes it back. Empty: no expiry.
    human_until = models.DateTimeField(_("human until"), null=True, blank=True)
    # Derived from controlled_by (True unless the agent owns it), kept for the
    # readers and the recovery index that filter on it.
    agent_paused = models.BooleanField(_("agent paused"), default=False)
    paused_reason = models.CharField(_("paused reason"), max_length=200, blank=True)
    paused_at = models.DateTimeField(_("paused at"), null=True, blank=True)
    flow_step = models.CharField(_("flow step"), max_length=100, blank=True)
    flow_data = models.JSONField(_("flow data"), default=dict, blank=True)
    context = models.JSONField(_("context"), default=dict, blank=True)
    last_message_at = models.DateTimeField(_("last message at"), null=True, blank=True)
    last_inbound_at = models.DateTimeField(_("last inbound at"), null=True, blank=True)
    last_outbound_at = models.DateTimeField(_("last outbound at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True)
    external_id = models.CharField(
        _("external id"), max_length=100, blank=True, help_text="Chatwoot conversation id"
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
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
            # The handoff sweep: human takeovers that can expire.
            models.Index(
                fields=["human_until"],
                condition=Q(controlled_by="human", human_until__isnull=False),
                name="conv_human_until_idx",
            ),
        ]
        permissions = [
            ("reprocess_conversation", _("Can reprocess the lead's last message")),
            (
                "take_over_conversation",
                "Pode assumir, responder, pausar, devolver e encerrar conversas",
            ),
        ]

    def __str__(self) -> str:
        return f"Conversa #{self.pk} {self.lead} via {self.chip.name}"


class Message(models.Model):
    """Every WhatsApp message, inbound and outbound.

    Outbound rows are the outbox: they wait as `queued` until the sender
    claims them. An agent reply points at the inbound message it answers
    (`reply_to`), which is how reprocessing avoids a second reply.
    """

    class Direction(models.TextChoices):
        INBOUND = "in", pgettext_lazy("message", "Received")
        OUTBOUND = "out", pgettext_lazy("message", "Sent")

    class Kind(models.TextChoices):
        TEXT = "text", _("Text")
        IMAGE = "image", _("Image")
        AUDIO = "audio", _("Audio")
        VIDEO = "video", _("Video")
        DOCUMENT = "document", _("Document")
        STICKER = "sticker", _("Sticker")
        LOCATION = "location", _("Location")
        CONTACT = "contact", _("Contact")
        OTHER = "other", _("Other")

    class Status(models.TextChoices):
        # inbound
        RECEIVED = "received", pgettext_lazy("message", "Received")
        PROCESSED = "processed", pgettext_lazy("message", "Processed")
        IGNORED = "ignored", pgettext_lazy("message", "Ignored")
        # outbound
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        SENT = "sent", pgettext_lazy("message", "Sent")
        DELIVERED = "delivered", _("Delivered")
        READ = "read", _("Read")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", pgettext_lazy("message", "Cancelled")

    class Purpose(models.TextChoices):
        INBOUND = "inbound", _("Lead message")
        REPLY = "reply", _("Agent reply")
        HUMAN = "human", _("Human reply")
        CAMPAIGN = "campaign", _("Campaign")
        FOLLOW_UP = "follow_up", _("Follow-up")
        SYSTEM = "system", _("System")

    class Outcome(models.TextChoices):
        # The operators' codes (SENT, FAILED_PROVIDER…) are the values; the
        # labels are what a filter shows.
        SENT = "sent", pgettext_lazy("message", "Sent")
        FAILED_PROVIDER = "failed_provider", _("Provider failure (attempts exhausted)")
        FAILED_PERMANENT = "failed_permanent", _("Permanent failure")
        FAILED_CIRCUIT_OPEN = "failed_circuit_open", _("Circuit open")
        CANCELLED = "cancelled", pgettext_lazy("message", "Cancelled")

    conversation = models.ForeignKey(
        Conversation,
        verbose_name=_("conversation"),
        on_delete=models.CASCADE,
        related_name="messages",
    )
    chip = models.ForeignKey(
        "channels.Chip", verbose_name=_("chip"), on_delete=models.PROTECT, related_name="messages"
    )
    direction = models.CharField(_("direction"), max_length=3, choices=Direction.choices)
    purpose = models.CharField(_("purpose"), max_length=20, choices=Purpose.choices)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, default=Kind.TEXT)
    body = models.TextField(_("body"), blank=True)
    media_url = models.URLField(_("media url"), max_length=2000, blank=True)
    media_id = models.CharField(_("media id"), max_length=255, blank=True)
    media_mime_type = models.CharField(_("media mime type"), max_length=100, blank=True)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices)
    outcome = models.CharField(_("outcome"), max_length=30, choices=Outcome.choices, blank=True)
    provider_message_id = models.CharField(_("provider message id"), max_length=255, blank=True)
    reply_to = models.ForeignKey(
        "self",
        verbose_name=_("reply to"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="replies",
    )
    campaign = models.ForeignKey(
        "campaigns.Campaign",
        verbose_name=_("campaign"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
    )
    webhook_event = models.ForeignKey(
        "channels.WebhookEvent",
        verbose_name=_("webhook event"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
    )
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("sent by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # Higher first: a reply to a lead who just wrote beats a campaign message.
    priority = models.SmallIntegerField(_("priority"), default=0)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    lease_expires_at = models.DateTimeField(_("lease expires at"), null=True, blank=True)
    # "host:pid" of the worker sending it: a dead one's lease is taken back at
    # once on its host instead of when the lease runs out.
    lease_owner = models.CharField(_("lease owner"), max_length=120, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    provider_timestamp = models.DateTimeField(_("provider timestamp"), null=True, blank=True)
    # When the lead's message reached the platform (its webhook's arrival),
    # earlier than `created_at` by however long intake took: the lead's burst
    # window and response time count from here, so a slow intake is not
    # added on top of the wait for the lead to finish typing.
    received_at = models.DateTimeField(_("received at"), null=True, blank=True)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    read_at = models.DateTimeField(_("read at"), null=True, blank=True)
    failed_at = models.DateTimeField(_("failed at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
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
            ("retry_message", _("Can retry queued messages")),
            ("cancel_message", _("Can cancel queued messages")),
            ("reprocess_message", _("Can reprocess received messages (agent reply)")),
        ]

    def __str__(self) -> str:
        arrow = "←" if self.direction == self.Direction.INBOUND else "→"
        preview = (self.body or self.get_kind_display())[:40]
        return f"{arrow} {preview}"

    @property
    def arrived_at(self) -> datetime:
        """When the platform got this message: its webhook's arrival, else its row's creation."""
        return self.received_at or self.created_at


class Handoff(models.Model):
    """A conversation handed to a human SDR. At most one open per conversation."""

    class Reason(models.TextChoices):
        LEAD_REQUEST = "lead_request", _("Lead asked for a human")
        AGENT_DECISION = "agent_decision", _("Agent decided")
        AGENT_FAILURE = "agent_failure", _("Agent failure")
        CHATWOOT_LABEL = "chatwoot_label", _("Chatwoot label")
        HUMAN_REPLIED = "human_replied", _("A human replied from the phone")
        OPS = "ops", _("Operations")
        SDR = "sdr", _("SDR took over")

    class Status(models.TextChoices):
        # requested -> assigned (an SDR took it) -> resolved (given back or closed)
        OPEN = "open", _("Requested")
        ACCEPTED = "accepted", _("Taken over")
        RESOLVED = "resolved", _("Resolved")

    conversation = models.ForeignKey(
        Conversation,
        verbose_name=_("conversation"),
        on_delete=models.CASCADE,
        related_name="handoffs",
    )
    reason = models.CharField(_("reason"), max_length=30, choices=Reason.choices)
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.OPEN
    )
    note = models.TextField(_("note"), blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("requested by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="handoffs_requested",
    )
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("assigned to"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="handoffs_assigned",
    )
    notified_at = models.DateTimeField(_("notified at"), null=True, blank=True)
    # The second notice, when nobody took it within HANDOFF_REMIND_MINUTES.
    reminded_at = models.DateTimeField(_("reminded at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    accepted_at = models.DateTimeField(_("accepted at"), null=True, blank=True)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)

    class Meta:
        verbose_name = _("handoff")
        verbose_name_plural = _("handoffs")
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


class OwnerChange(models.Model):
    """One change of a conversation's owner: the history behind `controlled_by`."""

    conversation = models.ForeignKey(
        Conversation,
        verbose_name=_("conversation"),
        on_delete=models.CASCADE,
        related_name="owner_changes",
    )
    previous = models.CharField(
        _("previous owner"), max_length=10, choices=Conversation.ControlledBy.choices
    )
    owner = models.CharField(
        _("new owner"), max_length=10, choices=Conversation.ControlledBy.choices
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("who"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # Who, when no user did it: "agente", "chatwoot", "whatsapp", "expiração".
    actor_label = models.CharField(_("source"), max_length=150)
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("when"), auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("owner change")
        verbose_name_plural = _("owner changes")
        indexes = [
            models.Index(fields=["conversation", "-created_at"], name="owner_change_conv_idx")
        ]

    def __str__(self) -> str:
        return f"{self.previous} → {self.owner}"


class LeadIdentity(models.Model):
    """An address a provider used for a lead: a phone JID, a Meta wa_id, an anonymous @lid.

    WhatsApp increasingly hides the phone behind an `@lid` id; keeping every
    address makes a lead first seen as `@lid` and later by phone one lead.
    """

    lead = models.ForeignKey(
        Lead, verbose_name=_("lead"), on_delete=models.CASCADE, related_name="identities"
    )
    provider = models.CharField(_("provider"), max_length=20)
    external_id = models.CharField(_("external id"), max_length=255)
    is_lid = models.BooleanField(_("is lid"), default=False)
    first_seen_at = models.DateTimeField(_("first seen at"), auto_now_add=True)
    last_seen_at = models.DateTimeField(_("last seen at"), auto_now=True)

    class Meta:
        verbose_name = _("lead identity")
        verbose_name_plural = _("lead identities")
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
        SENT = "sent", pgettext_lazy("message", "Sent")
        TRANSIENT = "transient", _("Transient error")
        RATE_LIMITED = "rate_limited", _("Rate limited")
        AUTH = "auth", _("Authentication")
        INVALID_RECIPIENT = "invalid_recipient", _("Invalid recipient")
        RESTRICTED = "restricted", _("Restricted number")
        PERMANENT = "permanent", _("Permanent error")

    message = models.ForeignKey(
        Message, verbose_name=_("message"), on_delete=models.CASCADE, related_name="attempts_log"
    )
    chip = models.ForeignKey(
        "channels.Chip", verbose_name=_("chip"), on_delete=models.CASCADE, related_name="+"
    )
    started_at = models.DateTimeField(
        _("started at"),
    )
    duration_ms = models.PositiveIntegerField(_("duration ms"), default=0)
    outcome = models.CharField(_("outcome"), max_length=20, choices=Outcome.choices)
    http_status = models.PositiveSmallIntegerField(_("http status"), null=True, blank=True)
    error_code = models.CharField(_("error code"), max_length=50, blank=True)
    error = models.TextField(_("error"), blank=True)
    provider_message_id = models.CharField(_("provider message id"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["message", "started_at"], name="attempt_message_idx"),
            models.Index(fields=["chip", "-started_at"], name="attempt_chip_idx"),
        ]

    def __str__(self) -> str:
        return f"attempt #{self.pk} {self.outcome}"


class ChatwootDelivery(models.Model):
    """A Chatwoot webhook delivery already handled: retries with the same key do nothing.

    The key is `X-Chatwoot-Delivery` (the same on Chatwoot's retries); older
    Chatwoot sends none, then a message event is keyed by its message id.
    """

    key = models.CharField(_("key"), max_length=200, unique=True)
    event = models.CharField(_("event"), max_length=50)
    outcome = models.CharField(_("outcome"), max_length=50)
    conversation = models.ForeignKey(
        Conversation,
        verbose_name=_("conversation"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    received_at = models.DateTimeField(_("received at"), auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name = _("Chatwoot delivery")
        verbose_name_plural = _("Chatwoot deliveries")

    def __str__(self) -> str:
        return f"{self.event} {self.key} ({self.outcome})"


class ChatwootMirror(models.Model):
    """One write into Chatwoot for a conversation: a message to mirror, or its labels to sync.

    The rows of one conversation are written in id order, one at a time (only
    the oldest unfinished row of a conversation can be claimed), and each
    once: the id Chatwoot gave the message is stored, and a try that may have
    reached Chatwoot (a timeout, a 5xx) looks for the message before posting
    it again (`uncertain`). Work that waits never holds up WhatsApp: it is
    done by django-q2 tasks apart from the outbox, see conversations.chatwoot_mirror.
    """

    class Kind(models.TextChoices):
        MESSAGE = "message", _("Message")
        LABELS = "labels", _("Labels")

    class State(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENDING = "sending", _("Sending")
        DONE = "done", _("Mirrored")
        FAILED = "failed", _("Failed")

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="chatwoot_mirrors"
    )
    message = models.OneToOneField(
        Message,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="chatwoot_mirror",
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # The last try ended without knowing whether Chatwoot stored the message.
    uncertain = models.BooleanField(default=False)
    # Chatwoot's message id (kind=message); the label change we made (kind=labels:
    # {"before": [...], "after": [...]}), to know its webhook echo.
    remote_id = models.CharField(max_length=100, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name = _("Chatwoot mirror")
        verbose_name_plural = _("Chatwoot mirrors")
        permissions = [("retry_chatwootmirror", _("Can send writes Chatwoot refused again"))]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="labels", message__isnull=True)
                | Q(kind="message", message__isnull=False),
                name="chatwoot_mirror_kind_matches_message",
            )
        ]
        indexes = [
            # The claim and the backlog: unfinished rows, by conversation in order.
            models.Index(
                fields=["conversation", "id"],
                condition=Q(state__in=["pending", "sending"]),
                name="chatwoot_mirror_open_idx",
            ),
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(state="pending"),
                name="chatwoot_mirror_due_idx",
            ),
            # Echoes of our own messages, found by Chatwoot's id.
            models.Index(
                fields=["remote_id"],
                condition=Q(kind="message") & ~Q(remote_id=""),
                name="chatwoot_mirror_remote_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.get_state_display()})"


class ChatwootBreaker(models.Model):
    """Chatwoot as a whole (one row): failed calls in a row and when to try it again.

    Every write has its own backoff; this one keeps a Chatwoot that is down
    from being called by every waiting write: while `retry_at` is ahead
    nobody calls it, then one write probes. A success closes it. One write
    Chatwoot keeps refusing pauses the others only for the first window.
    """

    failures = models.PositiveIntegerField(default=0)
    retry_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("Chatwoot breaker")

    def __str__(self) -> str:
        return f"Chatwoot: {self.failures} failure(s)"
