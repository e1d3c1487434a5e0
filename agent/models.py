from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop, pgettext_lazy

# The bot's texts a new profile starts with. They are data, edited per
# profile, so each default is translated once, when the profile is created,
# in the project's language (LANGUAGE_CODE) rather than whichever language
# happens to be active; gettext_noop only marks them for the catalog.
FALLBACK_REPLY = gettext_noop(
    "Sorry, I had a problem answering just now. One of our specialists will talk to you shortly."
)
HANDOFF_REPLY = gettext_noop(
    "Sure! I will call one of our specialists to carry on with you. Just wait a little."
)
CLOSING_MESSAGE = gettext_noop("Thank you for the information! We will be in touch soon. 😊")
OPT_OUT_CONFIRMATION = gettext_noop(
    "All right! You will not get our messages anymore. If you change your mind, just write."
)
# Sent to a lead who stopped answering the flow's question (no name in it: a
# lead the flow has not asked yet has none).
FOLLOW_UP_TEXT = gettext_noop(
    "Hi! Are you still there? Whenever you can, just answer my last question so we can carry on. 😊"
)
# Translators: the reply language is the one this text names.
SYSTEM_PROMPT = gettext_noop(
    "You are a considerate SDR (pre-sales rep) who chats on WhatsApp. Always answer in "
    "English, with short, natural messages, one question at a time. Qualify the lead, answer "
    "simple questions and, when the lead asks for a person or the subject is beyond you, use "
    "the request_handoff tool."
)
# Comma-separated, so each language lists its own words.
HANDOFF_KEYWORDS = gettext_noop("human, attendant, person, talk to someone")
OPT_OUT_KEYWORDS = gettext_noop("quit, stop, unsubscribe")
MAX_FOLLOW_UPS = 10


def in_project_language(message: str) -> str:
    """`message` translated into LANGUAGE_CODE, whatever language is active."""
    with translation.override(settings.LANGUAGE_CODE):
        return translation.gettext(message)


def _keywords(message: str) -> list[str]:
    return [word.strip() for word in in_project_language(message).split(",") if word.strip()]


def default_system_prompt() -> str:
    """For a conversation with no profile: AGENT_DEFAULT_SYSTEM_PROMPT, else SYSTEM_PROMPT."""
    return settings.AGENT_DEFAULT_SYSTEM_PROMPT or in_project_language(SYSTEM_PROMPT)


def default_fallback_reply() -> str:
    return in_project_language(FALLBACK_REPLY)


def default_handoff_reply() -> str:
    return in_project_language(HANDOFF_REPLY)


def default_closing_message() -> str:
    return in_project_language(CLOSING_MESSAGE)


def default_opt_out_confirmation() -> str:
    return in_project_language(OPT_OUT_CONFIRMATION)


def default_follow_up_text() -> str:
    return in_project_language(FOLLOW_UP_TEXT)


def default_handoff_keywords() -> list[str]:
    return _keywords(HANDOFF_KEYWORDS)


def default_opt_out_keywords() -> list[str]:
    return _keywords(OPT_OUT_KEYWORDS)


class Flow(models.Model):
    """A scripted qualification: ordered questions with validated answers."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    description = models.TextField(_("description"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("flow")
        verbose_name_plural = _("flows")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class FlowStep(models.Model):
    """One question of a flow. The answer is stored in `flow_data[key]`."""

    class Validator(models.TextChoices):
        NAME = "name", pgettext_lazy("validator", "Name")
        MENU = "menu", _("Menu option")
        MONTH = "month", _("Month")
        DAY = "day", _("Day")
        INTEGER_RANGE = "integer_range", _("Whole number (range)")
        FREE_TEXT = "free_text", _("Free text")
        EMAIL = "email", _("Email")
        DATE = "date", _("Date")

    flow = models.ForeignKey(
        Flow, verbose_name=_("flow"), on_delete=models.CASCADE, related_name="steps"
    )
    order = models.PositiveIntegerField(_("order"), default=0)
    key = models.SlugField(_("key"), max_length=100)
    question = models.TextField(
        _("question"),
    )
    validator = models.CharField(_("validator"), max_length=20, choices=Validator.choices)
    options = models.JSONField(
        _("options"),
        default=list,
        blank=True,
        help_text=_('Menu options, e.g. ["Casamento", "Aniversário"]; for a range, [min, max]'),
    )
    error_message = models.TextField(_("error message"), blank=True)
    next_step = models.SlugField(
        _("next step"),
        max_length=100,
        blank=True,
        help_text=_("Key of the next step; empty means the next in order"),
    )

    class Meta:
        verbose_name = _("flow step")
        verbose_name_plural = _("flow steps")
        ordering = ["flow", "order", "id"]
        constraints = [models.UniqueConstraint(fields=["flow", "key"], name="uniq_flow_step_key")]

    def __str__(self) -> str:
        return f"{self.flow}: {self.key}"


class AgentProfile(models.Model):
    """How an agent talks: persona, model, fallbacks and keywords."""

    class FlowEnd(models.TextChoices):
        HANDOFF = "handoff", _("Hand over to a human")
        LLM = "llm", _("Carry on with the LLM")
        CLOSE = "close", _("Send the closing message")

    name = models.CharField(_("name"), max_length=200, unique=True)
    persona = models.CharField(
        _("persona"), max_length=200, blank=True, help_text=_("e.g. Júlia, SDR")
    )
    system_prompt = models.TextField(_("system prompt"), blank=True)
    model = models.CharField(
        _("model"), max_length=100, blank=True, help_text=_("Empty: OPENAI_MODEL")
    )
    temperature = models.DecimalField(_("temperature"), max_digits=3, decimal_places=2, default=0.4)
    history_window = models.PositiveIntegerField(
        _("history window"), default=20, help_text=_("Messages of history sent to the model")
    )
    fallback_reply = models.TextField(_("fallback reply"), default=default_fallback_reply)
    handoff_on_failure = models.BooleanField(
        _("handoff on failure"),
        default=True,
        help_text=_(
            "When the LLM fails: send the fallback reply and hand the conversation "
            "to a human (otherwise only the fallback reply, and the agent keeps "
            "answering)"
        ),
    )
    handoff_reply = models.TextField(
        _("handoff reply"),
        default=default_handoff_reply,
        help_text=_("Sent when the lead asks for a human"),
    )
    handoff_keywords = models.JSONField(
        _("handoff keywords"), default=default_handoff_keywords, blank=True
    )
    opt_out_keywords = models.JSONField(
        _("opt out keywords"), default=default_opt_out_keywords, blank=True
    )
    opt_out_confirmation = models.TextField(
        _("opt out confirmation"), default=default_opt_out_confirmation
    )
    flow = models.ForeignKey(
        Flow,
        verbose_name=_("flow"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="profiles",
    )
    on_flow_end = models.CharField(
        _("on flow end"), max_length=20, choices=FlowEnd.choices, default=FlowEnd.HANDOFF
    )
    closing_message = models.TextField(
        _("closing message"),
        blank=True,
        help_text=_("Sent when the flow ends; empty uses a default thank-you"),
    )
    # Follow-ups for a lead who stopped answering mid-flow; queued by the
    # follow-up engine (campaigns.followups), the same one campaigns use.
    follow_up_enabled = models.BooleanField(
        _("follow-up enabled"),
        default=False,
        help_text=_(
            "Sends a reminder to a lead who stopped answering in the middle of the "
            "qualification flow."
        ),
    )
    follow_up_after_hours = models.PositiveIntegerField(
        _("follow-up after (hours)"),
        default=4,
        validators=[MinValueValidator(1)],
        help_text=_("Hours without an answer after the last message sent to the lead."),
    )
    follow_up_max = models.PositiveSmallIntegerField(
        _("maximum follow-ups"),
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_FOLLOW_UPS)],
        help_text=_("How many reminders, at most, while the lead does not answer."),
    )
    follow_up_texts = models.TextField(
        _("follow-up texts"),
        default=default_follow_up_text,
        help_text=_(
            "One text per follow-up, separated by a line holding only ---; with "
            "fewer texts than follow-ups, the last one repeats. Accepts {{nome}}, "
            "{{primeiro_nome}} and the flow's answers (for example {{tipo}})."
        ),
    )
    is_active = models.BooleanField(_("is active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("agent profile")
        verbose_name_plural = _("agent profiles")
        ordering = ["name"]
        permissions = [("sandbox_agentprofile", _("Can use the sandbox chat"))]
        constraints = [
            models.CheckConstraint(
                condition=Q(temperature__gte=0) & Q(temperature__lte=2),
                name="agent_profile_temperature_range",
            ),
            models.CheckConstraint(
                condition=Q(follow_up_after_hours__gte=1)
                & Q(follow_up_max__gte=1)
                & Q(follow_up_max__lte=MAX_FOLLOW_UPS),
                name="agent_profile_follow_up_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class AgentRun(models.Model):
    """One attempt of the agent to answer an inbound message."""

    class Kind(models.TextChoices):
        LLM = "llm", "LLM"
        FLOW = "flow", _("Flow")
        KEYWORD = "keyword", _("Keyword (opt-out, request for a human)")
        FALLBACK = "fallback", "Fallback"

    class Trigger(models.TextChoices):
        INBOUND = "inbound", _("Received message")
        REPROCESS = "reprocess", _("Reprocessing")
        RECOVERY = "recovery", _("Automatic recovery")

    class Outcome(models.TextChoices):
        RUNNING = "running", _("Running")
        REPLIED = "replied", _("Replied")
        HANDOFF = "handoff", _("Handed over")
        FALLBACK = "fallback", "Fallback"
        SKIPPED = "skipped", pgettext_lazy("message", "Ignored")
        ERROR = "error", _("Error")
        # Applied while the lead was typing, withdrawn before its reply left (agent.held_turn).
        SUPERSEDED = "superseded", _("Superseded")

    conversation = models.ForeignKey(
        "conversations.Conversation",
        verbose_name=_("conversation"),
        on_delete=models.CASCADE,
        related_name="agent_runs",
    )
    message = models.ForeignKey(
        "conversations.Message",
        verbose_name=_("message"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="agent_runs",
    )
    profile = models.ForeignKey(
        AgentProfile,
        verbose_name=_("profile"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="runs",
    )
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    trigger = models.CharField(
        _("trigger"), max_length=20, choices=Trigger.choices, default=Trigger.INBOUND
    )
    outcome = models.CharField(
        _("outcome"), max_length=20, choices=Outcome.choices, default=Outcome.RUNNING
    )
    model = models.CharField(_("model"), max_length=100, blank=True)
    latency_ms = models.PositiveIntegerField(_("latency ms"), null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(_("prompt tokens"), null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(_("completion tokens"), null=True, blank=True)
    tool_calls = models.JSONField(_("tool calls"), default=list, blank=True)
    error = models.TextField(_("error"), blank=True)
    started_at = models.DateTimeField(_("started at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("agent run")
        verbose_name_plural = _("agent runs")
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["-started_at"], name="agentrun_started_idx"),
            models.Index(fields=["outcome", "-started_at"], name="agentrun_outcome_idx"),
            # The recovery's loop guard: was this message already recovered once?
            models.Index(
                fields=["message"],
                condition=Q(trigger="recovery"),
                name="agentrun_recovery_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} run #{self.pk} ({self.get_outcome_display()})"


class ConversationLease(models.Model):
    """Who is answering a conversation right now: one worker per conversation.

    A lease row instead of a lock held by an open transaction: the LLM call
    takes seconds, and a row lock on the conversation would block the ingest
    of the lead's next message for that long. A worker that dies leaves a
    lease that simply expires (AGENT_LEASE_SECONDS, longer than the task
    timeout).
    """

    conversation = models.OneToOneField(
        "conversations.Conversation",
        verbose_name=_("conversation"),
        on_delete=models.CASCADE,
        related_name="agent_lease",
    )
    token = models.CharField(_("token"), max_length=32)
    expires_at = models.DateTimeField(
        _("expires at"),
    )
    acquired_at = models.DateTimeField(_("acquired at"), auto_now=True)

    def __str__(self) -> str:
        return f"lease {self.conversation_id} until {self.expires_at:%H:%M:%S}"
