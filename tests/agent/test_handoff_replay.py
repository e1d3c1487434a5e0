"""The seeds' handoff failures, replayed through the real webhooks.

Júlia's runbook: "label added but Júlia keeps answering"; the reprocess
runbook relies on an SDR's Chatwoot message pausing the agent and `/retomar`
resuming it. Here the lead writes through Z-API webhooks, the SDR acts
through Chatwoot's webhook (its real payloads) or the admin's chat page, and
django-q2's sync mode runs the agent and the outbox against a fake Z-API.
"""

import pytest
from django.urls import reverse

from conversations.models import Conversation, Message
from tests.agent.zapi_lead import Lead_
from tests.conversations.chatwoot import (
    TOKEN,
    agent_message,
    labels_changed,
    post_chatwoot,
    private_note,
)

pytestmark = pytest.mark.django_db

LEAD_PHONE = "+5544999999999"  # the Z-API fixture's sender
CHATWOOT_ID = 4242


@pytest.fixture(autouse=True)
def chatwoot_settings(settings):
    settings.CHATWOOT_WEBHOOK_TOKEN = TOKEN
    settings.CHATWOOT_WEBHOOK_SECRET = ""


@pytest.fixture
def talk(client, zapi_chip, run_tasks, django_capture_on_commit_callbacks):
    """The lead's first message answered by the agent; returns (lead, conversation)."""
    lead = Lead_(client, zapi_chip, django_capture_on_commit_callbacks)
    lead.says("Oi, queria saber o preço")
    conversation = Conversation.objects.get(lead__phone=LEAD_PHONE)
    assert agent_replies(conversation) == 1
    return lead, conversation


def agent_replies(conversation):
    return Message.objects.filter(
        conversation=conversation, purpose=Message.Purpose.REPLY, status=Message.Status.SENT
    ).count()


def chatwoot(client, capture, payload):
    """Chatwoot's delivery, with the conversation found by the contact's phone."""
    # Message events carry the conversation under "conversation"; conversation events are it.
    conversation = payload["conversation"] if payload["event"] == "message_created" else payload
    conversation["meta"]["sender"]["phone_number"] = LEAD_PHONE
    with capture(execute=True):
        response = post_chatwoot(client, payload)
    assert response.status_code == 200, response.content
    return response.json()["outcome"]


def test_after_the_handoff_label_the_agent_is_quiet_until_retomar(
    client, talk, fake_zapi, django_capture_on_commit_callbacks
):
    lead, conversation = talk
    capture = django_capture_on_commit_callbacks

    assert chatwoot(client, capture, labels_changed(CHATWOOT_ID, [], ["humano"])) == (
        "handoff_opened"
    )
    lead.says("Daniella")
    lead.says("alguém aí?")
    assert agent_replies(conversation) == 1

    assert chatwoot(client, capture, private_note(CHATWOOT_ID, "/retomar", message_id=1)) == (
        "resumed"
    )
    lead.says("Casamento")

    assert agent_replies(conversation) == 2
    assert len(fake_zapi.seen("/send-text")) == 2


def test_after_an_sdrs_chatwoot_message_the_agent_is_quiet_until_retomar(
    client, talk, fake_zapi, django_capture_on_commit_callbacks
):
    lead, conversation = talk
    capture = django_capture_on_commit_callbacks

    outcome = chatwoot(client, capture, agent_message(CHATWOOT_ID, "Oi! Sou a Carla."))
    lead.says("Oi Carla, tudo bem?")

    assert outcome == "human_reply"
    assert agent_replies(conversation) == 1
    sent = [request.body["message"] for request in fake_zapi.seen("/send-text")]
    assert sent[-1] == "Oi! Sou a Carla."

    chatwoot(client, capture, private_note(CHATWOOT_ID, "/retomar", message_id=2))
    lead.says("Então, é um casamento")
    # Delivered again by Chatwoot: still one reply.
    chatwoot(client, capture, private_note(CHATWOOT_ID, "/retomar", message_id=2))

    assert agent_replies(conversation) == 2
    assert len(fake_zapi.seen("/send-text")) == 3


def test_after_an_sdrs_reply_from_the_admin_the_agent_is_quiet_until_given_back(
    client, talk, fake_zapi, role_user, django_capture_on_commit_callbacks
):
    lead, conversation = talk
    capture = django_capture_on_commit_callbacks
    sdr = role_user("sdr")
    chat = reverse("admin:conversations_conversation_chat", args=[conversation.pk])

    client.force_login(sdr)
    with capture(execute=True):
        client.post(chat, {"action": "reply", "body": "Oi, aqui é a SDR"})
    lead.says("Oi! Quero um orçamento")
    assert agent_replies(conversation) == 1
    assert fake_zapi.seen("/send-text")[-1].body["message"] == "Oi, aqui é a SDR"

    with capture(execute=True):
        client.post(chat, {"action": "give_back"})
    lead.says("Casamento, 100 pessoas")

    assert agent_replies(conversation) == 2
    assert len(fake_zapi.seen("/send-text")) == 3
