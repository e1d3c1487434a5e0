"""A lead who answers before the bot's question left: the stale question is replaced."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agent.turns import SUPERSEDED_REASON
from channels.models import Chip
from conversations import outbox
from conversations.models import Conversation, Message
from tests.agent.zapi_lead import Lead_

pytestmark = pytest.mark.django_db

QUESTIONS = {  # the first two questions of tests/agent/conftest.py's qualification flow
    "nome": "Oi! Eu sou a Júlia 😊 Qual é o seu nome?",
    "tipo": (
        "Prazer! Que tipo de evento você está planejando?\n1. Casamento\n2. Aniversário\n"
        "3. Corporativo"
    ),
}


def test_a_lead_who_answers_before_the_question_left_gets_the_next_question_once(
    client, zapi_chip, fake_zapi, run_tasks, django_capture_on_commit_callbacks
):
    # The chip is busy (a flood, a slow provider): the bot's question waits in the outbox.
    Chip.objects.filter(pk=zapi_chip.pk).update(next_send_at=timezone.now() + timedelta(hours=1))
    lead = Lead_(client, zapi_chip, django_capture_on_commit_callbacks)

    lead.says("Oi, queria saber o preço")
    conversation = Conversation.objects.get()
    (asked_name,) = Message.objects.filter(conversation=conversation, direction="out")
    assert asked_name.body == QUESTIONS["nome"]
    assert asked_name.status == Message.Status.QUEUED

    lead.says("Ana")  # answers the name before the question even left

    asked_name.refresh_from_db()
    assert asked_name.status == Message.Status.CANCELLED
    assert asked_name.last_error == SUPERSEDED_REASON
    live = Message.objects.filter(conversation=conversation, direction="out").exclude(
        status=Message.Status.CANCELLED
    )
    assert [m.body for m in live] == [QUESTIONS["tipo"]]
    conversation.refresh_from_db()
    assert conversation.flow_data == {"nome": "Ana"}

    Chip.objects.filter(pk=zapi_chip.pk).update(next_send_at=None)
    outbox.outbox_drain()
    # The lead gets exactly one question, the right next one; never silence.
    assert [r.body["message"] for r in fake_zapi.seen("/send-text")] == [QUESTIONS["tipo"]]


def test_a_reply_already_sent_is_never_cancelled(
    client, zapi_chip, fake_zapi, run_tasks, django_capture_on_commit_callbacks
):
    lead = Lead_(client, zapi_chip, django_capture_on_commit_callbacks)
    lead.says("oi")
    lead.says("Ana")

    conversation = Conversation.objects.get()
    statuses = list(
        Message.objects.filter(conversation=conversation, direction="out")
        .order_by("pk")
        .values_list("body", "status")
    )
    assert statuses == [(QUESTIONS["nome"], "sent"), (QUESTIONS["tipo"], "sent")]


def test_the_sandbox_chat_shows_each_messages_real_state_and_why_it_was_cancelled(
    superuser_client, sandbox_chip, flow_profile, run_tasks, django_capture_on_commit_callbacks
):
    sandbox_chip.agent_profile = flow_profile
    sandbox_chip.next_send_at = timezone.now() + timedelta(hours=1)  # questions wait
    sandbox_chip.save()
    for text in ["oi", "Ana"]:
        with django_capture_on_commit_callbacks(execute=True):
            response = superuser_client.post(
                reverse("agent_sandbox:send"),
                {"chip": sandbox_chip.pk, "phone": "+5511988887777", "text": text},
                content_type="application/json",
            )
        assert response.status_code == 200, response.content

    transcript = superuser_client.get(
        reverse("agent_sandbox:messages"), {"chip": sandbox_chip.pk, "phone": "+5511988887777"}
    ).json()
    shown = [(m["body"], m["state"], m["reason"]) for m in transcript["messages"]]
    assert shown == [
        ("oi", "processed", ""),
        (QUESTIONS["nome"], "cancelled", SUPERSEDED_REASON),
        ("Ana", "processed", ""),
        (QUESTIONS["tipo"], "queued", ""),
    ]
