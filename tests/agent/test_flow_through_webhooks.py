"""A whole qualification, the way it happens: Z-API webhooks in, the agent's questions out.

Each answer is the real Z-API `ReceivedCallback` fixture with the lead's text,
posted to /webhooks/zapi/<chip_key>/; django-q2 runs the tasks (its sync mode:
the real task code, in this process), and the outbox sends the questions to a
local fake Z-API server.
"""

import pytest

from agent.flows import FLOW_DONE
from agent.models import AgentRun
from conversations.models import Conversation, Handoff, Lead, Message
from tests.agent.zapi_lead import Lead_, bot_messages

pytestmark = pytest.mark.django_db

QUESTIONS = {
    "nome": "Oi! Eu sou a Júlia 😊 Qual é o seu nome?",
    "tipo": (
        "Prazer! Que tipo de evento você está planejando?\n1. Casamento\n2. Aniversário\n"
        "3. Corporativo"
    ),
    "mes": "Em que mês vai ser?",
    "dia": "E qual dia?",
    "convidados": "Quantos convidados, mais ou menos?",
}


def test_a_whole_qualification_through_zapi_webhooks(
    client, zapi_chip, fake_zapi, run_tasks, django_capture_on_commit_callbacks
):
    lead = Lead_(client, zapi_chip, django_capture_on_commit_callbacks)

    lead.says("Oi, queria saber o preço")
    conversation = Conversation.objects.get(lead__phone="+5544999999999")
    assert bot_messages(conversation) == [QUESTIONS["nome"]]
    assert conversation.flow_step == "nome"

    lead.says("meu nome é Daniella Harumi")
    lead.says("formatura")  # not an option: the error, then the question again
    lead.says("1")
    lead.says("mar")
    lead.says("dia 15")
    lead.says("uns 50 convidados")

    conversation.refresh_from_db()
    assert bot_messages(conversation) == [
        QUESTIONS["nome"],
        QUESTIONS["tipo"],
        f"Escolha uma das opções: 1, 2 ou 3 🙂\n\n{QUESTIONS['tipo']}",
        QUESTIONS["mes"],
        QUESTIONS["dia"],
        QUESTIONS["convidados"],
        "Perfeito! Vou passar para a nossa especialista. 😉",
    ]
    assert conversation.flow_data == {
        "nome": "Daniella Harumi",
        "tipo": "Casamento",
        "mes": 3,
        "dia": 15,
        "convidados": 50,
    }
    assert conversation.flow_step == FLOW_DONE
    # The profile hands off at the end of the flow.
    assert conversation.controlled_by == Conversation.ControlledBy.HUMAN
    handoff = Handoff.objects.get(conversation=conversation)
    assert handoff.reason == Handoff.Reason.AGENT_DECISION
    assert "convidados: 50" in handoff.note
    assert Lead.objects.get(phone="+5544999999999").name == "Daniella Harumi"
    # Each reply answers the message it was written for, and went out through Z-API.
    for reply in Message.objects.filter(conversation=conversation, direction="out"):
        assert reply.reply_to is not None
        assert reply.status == Message.Status.SENT
    sent = [request.body["message"] for request in fake_zapi.seen("/send-text")]
    assert sent == bot_messages(conversation)
    assert {r.body["phone"] for r in fake_zapi.seen("/send-text")} == {"5544999999999"}
    assert set(AgentRun.objects.values_list("kind", flat=True)) == {"flow"}

    # Handed off: the next message gets no bot reply.
    lead.says("oi? alguém aí?")
    assert len(bot_messages(conversation)) == 7


def test_flow_end_can_close_with_a_message_and_later_turns_go_to_the_model(
    client, zapi_chip, flow_profile, run_tasks, django_capture_on_commit_callbacks
):
    flow_profile.on_flow_end = "close"
    flow_profile.closing_message = "Obrigada! Já anotei tudo. 🎉"
    flow_profile.save()
    lead = Lead_(client, zapi_chip, django_capture_on_commit_callbacks)
    for text in ["oi", "Ana", "2", "dezembro", "20", "cem"]:
        lead.says(text)

    conversation = Conversation.objects.get()
    assert bot_messages(conversation)[-1] == "Obrigada! Já anotei tudo. 🎉"
    assert conversation.flow_data["convidados"] == 100
    assert conversation.controlled_by == "agent"
    assert conversation.flow_step == FLOW_DONE

    lead.says("vocês têm estacionamento?")  # no model configured: fallback and a human
    assert bot_messages(conversation)[-1] == flow_profile.fallback_reply
    conversation.refresh_from_db()
    assert conversation.controlled_by == "human"
