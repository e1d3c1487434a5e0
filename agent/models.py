from django.db import models
from django.db.models import Q

DEFAULT_FALLBACK_REPLY = (
    "Desculpe, tive um problema para responder agora. "
    "Um dos nossos especialistas vai falar com você em instantes."
)
DEFAULT_HANDOFF_REPLY = (
    "Certo! Vou chamar um dos nossos especialistas para continuar com você. É só aguardar um "
    "pouquinho."
)
DEFAULT_CLOSING_MESSAGE = "Obrigada pelas informações! Em breve entraremos em contato. 😊"
DEFAULT_OPT_OUT_CONFIRMATION = (
    "Tudo bem! Você não vai mais receber nossas mensagens. Se mudar de ideia, é só chamar."
)


def default_handoff_keywords() -> list[str]:
    return ["humano", "atendente", "pessoa", "falar com alguém"]


def default_opt_out_keywords() -> list[str]:
    return ["sair", "parar", "stop", "descadastrar"]


class Flow(models.Model):
    """A scripted qualification: ordered questions with validated answers."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class FlowStep(models.Model):
    """One question of a flow. The answer is stored in `flow_data[key]`."""

    class Validator(models.TextChoices):
        NAME = "name", "Nome"
        MENU = "menu", "Opção de menu"
        MONTH = "month", "Mês"
        DAY = "day", "Dia"
        INTEGER_RANGE = "integer_range", "Número inteiro (faixa)"
        FREE_TEXT = "free_text", "Texto livre"
        EMAIL = "email", "E-mail"
        DATE = "date", "Data"

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="steps")
    order = models.PositiveIntegerField(default=0)
    key = models.SlugField(max_length=100)
    question = models.TextField()
    validator = models.CharField(max_length=20, choices=Validator.choices)
    options = models.JSONField(
        default=list,
        blank=True,
        help_text='Menu options, e.g. ["Casamento", "Aniversário"]; for a range, [min, max]',
    )
    error_message = models.TextField(blank=True)
    next_step = models.SlugField(
        max_length=100, blank=True, help_text="Key of the next step; empty means the next in order"
    )

    class Meta:
        ordering = ["flow", "order", "id"]
        constraints = [models.UniqueConstraint(fields=["flow", "key"], name="uniq_flow_step_key")]

    def __str__(self) -> str:
        return f"{self.flow}: {self.key}"


class AgentProfile(models.Model):
    """How an agent talks: persona, model, fallbacks and keywords."""

    class FlowEnd(models.TextChoices):
        HANDOFF = "handoff", "Transferir para humano"
        LLM = "llm", "Continuar com o LLM"
        CLOSE = "close", "Enviar mensagem de encerramento"

    name = models.CharField(max_length=200, unique=True)
    persona = models.CharField(max_length=200, blank=True, help_text="e.g. Júlia, SDR")
    system_prompt = models.TextField(blank=True)
    model = models.CharField(max_length=100, blank=True, help_text="Empty: OPENAI_MODEL")
    temperature = models.DecimalField(max_digits=3, decimal_places=2, default=0.4)
    history_window = models.PositiveIntegerField(
        default=20, help_text="Messages of history sent to the model"
    )
    fallback_reply = models.TextField(default=DEFAULT_FALLBACK_REPLY)
    handoff_on_failure = models.BooleanField(
        default=True,
        help_text="When the LLM fails: send the fallback reply and hand the conversation to a "
        "human (otherwise only the fallback reply, and the agent keeps answering)",
    )
    handoff_reply = models.TextField(
        default=DEFAULT_HANDOFF_REPLY, help_text="Sent when the lead asks for a human"
    )
    handoff_keywords = models.JSONField(default=default_handoff_keywords, blank=True)
    opt_out_keywords = models.JSONField(default=default_opt_out_keywords, blank=True)
    opt_out_confirmation = models.TextField(default=DEFAULT_OPT_OUT_CONFIRMATION)
    flow = models.ForeignKey(
        Flow, on_delete=models.SET_NULL, null=True, blank=True, related_name="profiles"
    )
    on_flow_end = models.CharField(max_length=20, choices=FlowEnd.choices, default=FlowEnd.HANDOFF)
    closing_message = models.TextField(
        blank=True, help_text="Sent when the flow ends; empty uses a default thank-you"
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("sandbox_agentprofile", "Pode usar o chat sandbox")]
        constraints = [
            models.CheckConstraint(
                condition=Q(temperature__gte=0) & Q(temperature__lte=2),
                name="agent_profile_temperature_range",
            )
        ]

    def __str__(self) -> str:
        return self.name


class AgentRun(models.Model):
    """One attempt of the agent to answer an inbound message."""

    class Kind(models.TextChoices):
        LLM = "llm", "LLM"
        FLOW = "flow", "Fluxo"
        KEYWORD = "keyword", "Palavra-chave (opt-out, pedido de humano)"
        FALLBACK = "fallback", "Fallback"

    class Trigger(models.TextChoices):
        INBOUND = "inbound", "Mensagem recebida"
        REPROCESS = "reprocess", "Reprocessamento"
        RECOVERY = "recovery", "Recuperação automática"

    class Outcome(models.TextChoices):
        RUNNING = "running", "Em execução"
        REPLIED = "replied", "Respondeu"
        HANDOFF = "handoff", "Transferiu"
        FALLBACK = "fallback", "Fallback"
        SKIPPED = "skipped", "Ignorada"
        ERROR = "error", "Erro"

    conversation = models.ForeignKey(
        "conversations.Conversation", on_delete=models.CASCADE, related_name="agent_runs"
    )
    message = models.ForeignKey(
        "conversations.Message",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="agent_runs",
    )
    profile = models.ForeignKey(
        AgentProfile, on_delete=models.SET_NULL, null=True, blank=True, related_name="runs"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.INBOUND)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.RUNNING)
    model = models.CharField(max_length=100, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    tool_calls = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
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
        "conversations.Conversation", on_delete=models.CASCADE, related_name="agent_lease"
    )
    token = models.CharField(max_length=32)
    expires_at = models.DateTimeField()
    acquired_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"lease {self.conversation_id} until {self.expires_at:%H:%M:%S}"
