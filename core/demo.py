"""Demo data for `make run`: enough to click through every admin page."""

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from agent.models import AgentProfile, Flow, FlowStep
from channels.models import Chip, Provider
from conversations.ingest import agent_dispatch
from conversations.models import Conversation, Lead, Message

DEMO_CHIP_NAME = "Sandbox"
DEMO_PROFILE_NAME = "Júlia (demo)"
DEMO_FLOW_NAME = "Qualificação de eventos (demo)"

DEMO_STEPS = [
    ("nome", "Oi! Eu sou a Júlia 😊 Qual é o seu nome?", FlowStep.Validator.NAME, []),
    (
        "tipo",
        "Prazer! Que tipo de evento você está planejando?\n1. Casamento\n2. Aniversário\n"
        "3. Corporativo",
        FlowStep.Validator.MENU,
        ["Casamento", "Aniversário", "Corporativo"],
    ),
    ("mes", "Em que mês vai ser?", FlowStep.Validator.MONTH, []),
    (
        "convidados",
        "Quantos convidados, mais ou menos?",
        FlowStep.Validator.INTEGER_RANGE,
        [1, 2000],
    ),
]

DEMO_LEADS = [
    ("+5511999990001", "Daniella Harumi", ["Oi, queria saber o preço", "para casamento"]),
    ("+5511999990002", "Rafael Souza", ["Boa tarde! Vocês atendem em Campinas?"]),
    ("+5521999990003", "Contato Exemplo", ["sair"]),
]


@dataclass
class DemoResult:
    admin_username: str
    admin_password: str | None  # None when the admin already existed
    created: bool


@transaction.atomic
def demo_seed(*, admin_username: str = "admin") -> DemoResult:
    """Create the demo chip, profile, flow, leads and admin user. Idempotent."""
    flow, flow_created = Flow.objects.get_or_create(
        name=DEMO_FLOW_NAME, defaults={"description": "Fluxo de exemplo dos seeds"}
    )
    if flow_created:
        FlowStep.objects.bulk_create(
            FlowStep(flow=flow, order=i, key=key, question=q, validator=v, options=opts)
            for i, (key, q, v, opts) in enumerate(DEMO_STEPS)
        )
    profile, _ = AgentProfile.objects.get_or_create(
        name=DEMO_PROFILE_NAME,
        defaults={
            "persona": "Júlia, SDR",
            "system_prompt": (
                "Você é a Júlia, SDR de uma casa de eventos. Responda em português do "
                "Brasil, com mensagens curtas, e qualifique o lead."
            ),
            "flow": flow,
        },
    )
    chip, created = Chip.objects.get_or_create(
        name=DEMO_CHIP_NAME,
        defaults={
            "provider": Provider.SANDBOX,
            "phone": "+5511900000000",
            "status": Chip.Status.CONNECTED,
            "agent_profile": profile,
        },
    )
    now = timezone.now()
    for offset, (phone, name, texts) in enumerate(DEMO_LEADS):
        lead, _ = Lead.objects.get_or_create(phone=phone, defaults={"name": name, "source": "demo"})
        conversation, conv_created = Conversation.objects.get_or_create(
            lead=lead, chip=chip, status=Conversation.Status.OPEN
        )
        if not conv_created:
            continue
        at = now - timedelta(minutes=10 * (offset + 1))
        for i, text in enumerate(texts):
            message = Message.objects.create(
                conversation=conversation,
                chip=chip,
                direction=Message.Direction.INBOUND,
                purpose=Message.Purpose.INBOUND,
                status=Message.Status.RECEIVED,
                body=text,
                provider_message_id=f"demo-{lead.pk}-{i}",
                provider_timestamp=at,
            )
            # Handed to the agent the way a webhook's message is: the worker
            # answers them as soon as it starts. Left alone, they waited for
            # the stuck-conversation recovery, whose warnings read like a
            # failure on the first start.
            transaction.on_commit(lambda pk=message.pk: agent_dispatch(message_id=pk))
        conversation.last_message_at = conversation.last_inbound_at = at
        conversation.save(update_fields=["last_message_at", "last_inbound_at"])

    User = get_user_model()
    password = None
    if not User.objects.filter(username=admin_username).exists():
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(
            username=admin_username, email=f"{admin_username}@example.com", password=password
        )
    return DemoResult(admin_username=admin_username, admin_password=password, created=created)
