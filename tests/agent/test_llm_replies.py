"""The LLM agent against a local fake OpenAI-compatible server: the real client, real HTTP."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse

from agent import tasks
from agent.llm import split_reply
from agent.models import AgentRun
from conversations import outbox
from conversations.models import Conversation, Handoff, Message
from core.models import MetricCounter
from tests.factories.agent import AgentProfileFactory
from tests.factories.conversations import (
    ConversationFactory,
    InboundMessageFactory,
    OutboundMessageFactory,
)
from tests.support.fake_openai import Answer, completion, hang, rate_limited, server_error

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(sandbox_chip):
    sandbox_chip.agent_profile = AgentProfileFactory(
        system_prompt="Você é a Júlia, SDR da Casa Aurora. Seja breve.",
        model="gpt-4o-mini",
        history_window=4,
    )
    sandbox_chip.save()
    return ConversationFactory(chip=sandbox_chip, lead__name="Daniella Harumi")


def replies(conversation):
    return list(
        Message.objects.filter(
            conversation=conversation, direction=Message.Direction.OUTBOUND
        ).order_by("pk")
    )


def test_normal_reply_goes_to_the_outbox_linked_to_the_message(fake_openai, conversation):
    older = [
        InboundMessageFactory(conversation=conversation, body="oi"),
        OutboundMessageFactory(conversation=conversation, body="Oi! Tudo bem?", status="sent"),
        InboundMessageFactory(conversation=conversation, body="tudo, e você?"),
        OutboundMessageFactory(conversation=conversation, body="Tudo ótimo!", status="sent"),
    ]
    inbound = InboundMessageFactory(conversation=conversation, body="Quanto custa um casamento?")
    fake_openai.script(completion("Depende do número de convidados. Quantas pessoas você espera?"))

    assert tasks.answer_message(inbound.pk) == "replied"

    [reply] = replies(conversation)[len(older) - 2 :]
    assert reply.body == "Depende do número de convidados. Quantas pessoas você espera?"
    assert (reply.purpose, reply.status, reply.reply_to_id) == ("reply", "queued", inbound.pk)
    inbound.refresh_from_db()
    assert inbound.status == Message.Status.PROCESSED
    assert inbound.processed_at
    [request] = fake_openai.requests
    assert request.headers["authorization"] == "Bearer sk-test-agent"
    body = request.body
    assert body["model"] == "gpt-4o-mini"
    assert {tool["function"]["name"] for tool in body["tools"]} == {
        "request_handoff",
        "update_lead",
        "end_conversation",
    }
    system, *history = body["messages"]
    assert system["role"] == "system"
    assert "Casa Aurora" in system["content"]
    assert "Daniella Harumi" in system["content"]
    # history_window=4: the oldest "oi" is left out; the lead's message is last.
    assert [(m["role"], m["content"]) for m in history] == [
        ("assistant", "Oi! Tudo bem?"),
        ("user", "tudo, e você?"),
        ("assistant", "Tudo ótimo!"),
        ("user", "Quanto custa um casamento?"),
    ]
    run = AgentRun.objects.get()
    assert (run.kind, run.outcome, run.trigger) == ("llm", "replied", "inbound")
    assert (run.prompt_tokens, run.completion_tokens) == (120, 30)
    assert run.latency_ms is not None
    assert run.finished_at
    assert run.message_id == inbound.pk
    assert run.model == "gpt-4o-mini-2024-07-18"


def test_long_reply_is_split_into_whatsapp_sized_messages(fake_openai, conversation, settings):
    settings.AGENT_REPLY_MAX_CHARS = 120
    paragraphs = [
        "Que bom que você chegou até a gente! A Casa Aurora faz casamentos de 50 a 300 convidados.",
        "Temos três pacotes: Essencial, Clássico e Completo, todos com buffet e decoração.",
        "Posso te fazer algumas perguntas para montar uma proposta?",
    ]
    inbound = InboundMessageFactory(conversation=conversation, body="me conta mais")
    fake_openai.script(completion("\n\n".join(paragraphs)))

    tasks.answer_message(inbound.pk)

    parts = replies(conversation)
    assert [p.body for p in parts] == paragraphs
    assert all(len(p.body) <= 120 and p.reply_to_id == inbound.pk for p in parts)


def test_tool_call_request_handoff_opens_a_handoff(fake_openai, conversation):
    inbound = InboundMessageFactory(
        conversation=conversation, body="quero negociar o valor com alguém do comercial"
    )
    fake_openai.script(
        completion(None, tool_calls=[("request_handoff", {"reason": "negociação de preço"})]),
        completion("Claro! Vou chamar a Marina, do comercial, para falar com você."),
    )

    assert tasks.answer_message(inbound.pk) == "handoff"

    conversation.refresh_from_db()
    assert conversation.controlled_by == Conversation.ControlledBy.HUMAN
    handoff = Handoff.objects.get(conversation=conversation)
    assert (handoff.reason, handoff.status, handoff.note) == (
        "agent_decision",
        "open",
        "negociação de preço",
    )
    [notice] = replies(conversation)
    # A system notice: it still leaves although a human now holds the conversation.
    assert notice.purpose == Message.Purpose.SYSTEM
    assert notice.reply_to_id == inbound.pk
    assert notice.body == "Claro! Vou chamar a Marina, do comercial, para falar com você."
    # The second request carried the tool call and its result back to the model.
    second = fake_openai.requests[1].body["messages"]
    assert second[-2]["tool_calls"][0]["function"]["name"] == "request_handoff"
    assert second[-1]["role"] == "tool"
    assert json.loads(second[-1]["content"])["ok"] is True
    run = AgentRun.objects.get()
    assert run.outcome == "handoff"
    assert run.tool_calls == [
        {"name": "request_handoff", "arguments": {"reason": "negociação de preço"}}
    ]
    assert (run.prompt_tokens, run.completion_tokens) == (240, 60)
    assert MetricCounter.objects.get(name="handoffs_total").labels == '{"reason": "agent_decision"}'


def test_update_lead_and_end_conversation_tools(fake_openai, conversation):
    conversation.lead.name = ""
    conversation.lead.save()
    inbound = InboundMessageFactory(
        conversation=conversation, body="sou o Pedro, pedro@aurora.com.br, era só isso, obrigado"
    )
    fake_openai.script(
        completion(
            "Obrigada, Pedro! Qualquer coisa é só chamar. 👋",
            tool_calls=[
                ("update_lead", {"name": "Pedro", "email": "pedro@aurora.com.br"}),
                ("end_conversation", {"reason": "lead se despediu"}),
            ],
        )
    )

    assert tasks.answer_message(inbound.pk) == "replied"

    conversation.refresh_from_db()
    conversation.lead.refresh_from_db()
    assert (conversation.lead.name, conversation.lead.email) == ("Pedro", "pedro@aurora.com.br")
    assert conversation.status == Conversation.Status.CLOSED
    assert conversation.closed_at
    assert [m.body for m in replies(conversation)] == [
        "Obrigada, Pedro! Qualquer coisa é só chamar. 👋"
    ]
    assert len(fake_openai.requests) == 1


def test_timeout_leads_to_the_fallback_and_a_handoff_never_silence(
    fake_openai, conversation, settings
):
    settings.OPENAI_TIMEOUT_SECONDS = 0.5
    settings.OPENAI_MAX_ATTEMPTS = 2
    inbound = InboundMessageFactory(conversation=conversation, body="vocês fazem festa infantil?")
    fake_openai.script(hang(5), hang(5))

    assert tasks.answer_message(inbound.pk) == "fallback"

    assert len(fake_openai.requests) == 2  # the timeout was retried once, then given up
    profile = conversation.chip.agent_profile
    [fallback] = replies(conversation)
    assert fallback.body == profile.fallback_reply
    assert "Traceback" not in fallback.body
    assert fallback.reply_to_id == inbound.pk
    conversation.refresh_from_db()
    assert conversation.last_error.startswith("timeout")
    assert conversation.last_error_at is not None
    assert conversation.controlled_by == Conversation.ControlledBy.HUMAN
    assert Handoff.objects.get(conversation=conversation).reason == "agent_failure"
    run = AgentRun.objects.get()
    assert (run.kind, run.outcome) == ("llm", "fallback")
    assert run.error.startswith("timeout")


def test_fallback_without_handoff_when_the_profile_says_so(fake_openai, conversation):
    profile = conversation.chip.agent_profile
    profile.handoff_on_failure = False
    profile.fallback_reply = "Opa, me dá um minutinho que já te respondo!"
    profile.save()
    inbound = InboundMessageFactory(conversation=conversation, body="oi")
    fake_openai.script(server_error(), then=server_error())

    assert tasks.answer_message(inbound.pk) == "fallback"

    assert len(fake_openai.requests) == 3  # OPENAI_MAX_ATTEMPTS, with backoff between them

    [fallback] = replies(conversation)
    assert (fallback.body, fallback.purpose) == (profile.fallback_reply, "reply")
    conversation.refresh_from_db()
    assert conversation.controlled_by == "agent"
    assert "server_error" in conversation.last_error
    assert not Handoff.objects.exists()
    # The error also stays on the message it concerns (the ops' message filters).
    inbound.refresh_from_db()
    assert (inbound.status, inbound.last_error) == ("processed", conversation.last_error)


def test_an_answer_clears_the_error_left_on_the_lead_message(fake_openai, conversation):
    earlier = InboundMessageFactory(conversation=conversation, body="oi")
    inbound = InboundMessageFactory(
        conversation=conversation, body="tem vaga sábado?", last_error="timeout: earlier"
    )
    fake_openai.script(completion("Tem sim! Quantos convidados?"))

    assert tasks.answer_message(inbound.pk) == "replied"

    inbound.refresh_from_db()
    earlier.refresh_from_db()
    assert (inbound.status, inbound.last_error) == ("processed", "")
    assert earlier.status == "processed"


def test_429_is_retried_with_backoff_then_answered(fake_openai, conversation):
    inbound = InboundMessageFactory(conversation=conversation, body="qual o endereço?")
    fake_openai.script(rate_limited(0.2), completion("Fica na Rua das Flores, 120, em Campinas."))

    assert tasks.answer_message(inbound.pk) == "replied"

    first, second = fake_openai.requests
    assert second.at - first.at >= 0.2  # Retry-After was honoured
    [reply] = replies(conversation)
    assert reply.body == "Fica na Rua das Flores, 120, em Campinas."
    conversation.refresh_from_db()
    assert conversation.last_error == ""


def test_a_successful_reply_clears_the_previous_error(fake_openai, conversation):
    conversation.last_error = "timeout: earlier"
    conversation.save()
    inbound = InboundMessageFactory(conversation=conversation, body="oi de novo")

    tasks.answer_message(inbound.pk)

    conversation.refresh_from_db()
    assert conversation.last_error == ""


def test_without_an_api_key_the_fallback_goes_out_and_a_human_takes_over(conversation):
    inbound = InboundMessageFactory(conversation=conversation, body="oi")

    assert tasks.answer_message(inbound.pk) == "fallback"

    [fallback] = replies(conversation)
    assert fallback.body == conversation.chip.agent_profile.fallback_reply
    conversation.refresh_from_db()
    assert "OPENAI_API_KEY" in conversation.last_error
    assert AgentRun.objects.get().kind == "fallback"


def test_response_time_is_measured_to_the_provider_accepting_the_first_part(
    fake_openai, conversation, client, superuser_client, fake_zapi, settings
):
    fake_provider = fake_zapi  # one scripted server stands in for any provider
    settings.OUTBOX_REPLY_GAP_MIN_SECONDS = settings.OUTBOX_REPLY_GAP_MAX_SECONDS = 0.1
    settings.AGENT_REPLY_MAX_CHARS = 20  # the reply below goes in two parts
    chip = conversation.chip
    chip.provider, chip.api_base_url, chip.api_token = "evolution", fake_provider.url, "k"
    chip.instance_id = chip.instance_id or "inst"
    chip.save()
    fake_openai.script(completion("Oi, Daniella!\n\nTemos horários amanhã."))
    inbound = InboundMessageFactory(conversation=conversation, body="oi")
    # It waited 3 s in intake's line before it was stored: the lead waited too.
    Message.objects.filter(pk=inbound.pk).update(
        received_at=inbound.created_at - timedelta(seconds=3)
    )
    inbound.refresh_from_db()
    tasks.answer_message(inbound.pk)

    text = client.get("/metrics").content.decode()
    # Queued, not yet accepted: the lead is still waiting.
    for series in ("agent_debounce_seconds", "agent_llm_seconds", "agent_turn_seconds"):
        assert f"{series}_count 1.0" in text, series
    assert "agent_response_seconds_count 0.0" in text

    outbox.outbox_drain(max_seconds=5)

    # "digitando…" when the turn started, then every part of the reply.
    assert len(fake_provider.seen("/chat/sendPresence/")) == 1
    sent = fake_provider.seen("/message/sendText/")
    assert len(sent) == Message.objects.filter(reply_to=inbound).count() >= 2
    text = client.get("/metrics").content.decode()
    # One observation per turn, however many parts the reply has.
    assert "agent_response_seconds_count 1.0" in text
    assert 'agent_response_seconds_bucket{le="+Inf"} 1.0' in text
    assert 'agent_response_seconds_bucket{le="2.0"} 0.0' in text
    assert "outbox_reply_wait_seconds_count 1.0" in text
    # The conversation page shows the turn's response time next to the lead's message.
    page = superuser_client.get(
        reverse("admin:conversations_conversation_change", args=[conversation.pk])
    ).content.decode()
    assert "Tempo de resposta" in page
    first = Message.objects.filter(reply_to=inbound).order_by("pk").first()
    waited = (first.sent_at - inbound.received_at).total_seconds()
    assert waited >= 3
    assert f"{waited:.1f} s" in page


def test_handoffs_total_counts_by_reason_at_metrics(conversation, client):
    for text in ["quero falar com um atendente", "oi"]:
        other = ConversationFactory(chip=conversation.chip)
        tasks.answer_message(InboundMessageFactory(conversation=other, body=text).pk)

    text = client.get("/metrics").content.decode()
    assert 'handoffs_total{reason="lead_request"} 1.0' in text
    assert 'handoffs_total{reason="agent_failure"} 1.0' in text


@pytest.mark.parametrize(
    "answer",
    [
        Answer(200, "<html>Bad gateway</html>"),
        Answer(200, {"id": "x", "object": "chat.completion", "choices": []}),
        Answer(401, {"error": {"message": "Incorrect API key provided", "type": "invalid"}}),
    ],
)
def test_a_server_that_is_only_almost_compatible_leads_to_the_fallback(
    fake_openai, conversation, answer
):
    inbound = InboundMessageFactory(conversation=conversation, body="oi")
    fake_openai.script(answer)

    assert tasks.answer_message(inbound.pk) == "fallback"

    assert len(fake_openai.requests) == 1  # nothing here is worth retrying
    [fallback] = replies(conversation)
    assert fallback.body == conversation.chip.agent_profile.fallback_reply
    run = AgentRun.objects.get()
    assert run.outcome == "fallback"
    assert run.error


def test_split_reply_keeps_short_answers_whole_and_cuts_long_paragraphs_at_sentences():
    assert split_reply("Oi!\n\nTudo bem?", max_chars=100) == ["Oi!\n\nTudo bem?"]
    sentences = ["Primeira frase bem comprida aqui.", "Segunda frase também.", "Terceira!"]
    parts = split_reply(" ".join(sentences), max_chars=40)
    assert parts == ["Primeira frase bem comprida aqui.", "Segunda frase também. Terceira!"]
    many = "\n\n".join(f"Parágrafo {n} com algum texto." for n in range(10))
    parts = split_reply(many, max_chars=30, max_parts=3)
    assert len(parts) == 3
    assert parts[-1].endswith("Parágrafo 9 com algum texto.")
    word = "a" * 95
    assert [len(p) for p in split_reply(word, max_chars=40)] == [40, 40, 15]
