"""POST /webhooks/chatwoot/<token>/ driven by Chatwoot's real payloads (tests/fixtures/chatwoot).

The SDR's message goes to the lead through the real outbox and the local fake
provider; nothing of ours is stubbed.
"""

import json
import time

import pytest

from conversations import outbox
from conversations.chatwoot_events import chatwoot_signature
from conversations.models import ChatwootDelivery, Conversation, Handoff, Message
from tests.conversations.chatwoot import (
    SECRET,
    TOKEN,
    agent_message,
    chatwoot_payload,
    labels_changed,
    post_chatwoot,
    private_note,
)
from tests.factories.conversations import ConversationFactory

pytestmark = pytest.mark.django_db

Owner = Conversation.ControlledBy
CHATWOOT_ID = 49  # the conversation id in the real payloads


@pytest.fixture(autouse=True)
def chatwoot_settings(settings):
    settings.CHATWOOT_WEBHOOK_TOKEN = TOKEN
    settings.CHATWOOT_WEBHOOK_SECRET = ""
    return settings


@pytest.fixture
def conversation(provider_chip):
    return ConversationFactory(chip=provider_chip(), external_id=str(CHATWOOT_ID))


def test_an_sdrs_chatwoot_message_reaches_the_lead_and_the_human_owns_the_conversation(
    client, conversation, fake_provider
):
    response = post_chatwoot(client, chatwoot_payload("message_created_outgoing_agent"))
    outbox.outbox_drain(max_seconds=0)

    assert response.status_code == 200
    assert response.json() == {"outcome": "human_reply", "conversation": conversation.pk}
    message = Message.objects.get(conversation=conversation)
    assert (message.purpose, message.body, message.status) == (
        Message.Purpose.HUMAN,
        "Teste2",
        Message.Status.SENT,
    )
    [sent] = fake_provider.requests
    assert "Teste2" in json.dumps(sent.body)
    conversation.refresh_from_db()
    assert conversation.controlled_by == Owner.HUMAN
    assert conversation.owner_changes.get().actor_label == "chatwoot:Agente Teste"
    handoff = Handoff.objects.get(conversation=conversation)
    assert handoff.reason == Handoff.Reason.HUMAN_REPLIED


def test_a_retried_delivery_is_applied_once(client, conversation):
    payload = agent_message(CHATWOOT_ID, "Oi, aqui é a Carla")

    first = post_chatwoot(client, payload, delivery="d-1")
    again = post_chatwoot(client, payload, delivery="d-1")

    assert first.json()["outcome"] == "human_reply"
    assert again.json()["outcome"] == "duplicate"
    assert Message.objects.filter(conversation=conversation).count() == 1


def test_without_a_delivery_id_a_message_is_still_applied_once(client, conversation):
    payload = agent_message(CHATWOOT_ID, "Oi", message_id=777)

    post_chatwoot(client, payload, delivery="")
    again = post_chatwoot(client, payload, delivery="")

    assert again.json()["outcome"] == "duplicate"
    assert Message.objects.filter(conversation=conversation).count() == 1
    assert ChatwootDelivery.objects.get().key == "message:777"


def test_private_notes_resume_and_pause(client, conversation):
    post_chatwoot(client, agent_message(CHATWOOT_ID, "Assumo daqui", message_id=1))

    resumed = post_chatwoot(client, private_note(CHATWOOT_ID, "/retomar", message_id=2))
    conversation.refresh_from_db()
    assert resumed.json()["outcome"] == "resumed"
    assert conversation.controlled_by == Owner.AGENT
    assert Handoff.objects.get(conversation=conversation).status == Handoff.Status.RESOLVED

    paused = post_chatwoot(client, private_note(CHATWOOT_ID, "/pausar agora", message_id=3))
    other_note = post_chatwoot(client, private_note(CHATWOOT_ID, "lead chato", message_id=4))
    conversation.refresh_from_db()
    assert paused.json()["outcome"] == "paused"
    assert other_note.json()["outcome"] == "private_note"
    assert conversation.controlled_by == Owner.PAUSED
    # Notes never reach the lead.
    assert Message.objects.filter(conversation=conversation).count() == 1


def test_the_handoff_label_opens_and_its_removal_closes_the_handoff(client, conversation):
    opened = post_chatwoot(
        client, labels_changed(CHATWOOT_ID, ["novo_lead"], ["novo_lead", "humano"])
    )
    conversation.refresh_from_db()
    handoff = Handoff.objects.get(conversation=conversation)
    assert opened.json()["outcome"] == "handoff_opened"
    assert (handoff.reason, handoff.status) == (Handoff.Reason.CHATWOOT_LABEL, Handoff.Status.OPEN)
    assert conversation.controlled_by == Owner.HUMAN

    closed = post_chatwoot(client, labels_changed(CHATWOOT_ID, ["novo_lead", "humano"], []))
    conversation.refresh_from_db()
    handoff.refresh_from_db()
    assert closed.json()["outcome"] == "given_back"
    assert handoff.status == Handoff.Status.RESOLVED
    assert conversation.controlled_by == Owner.AGENT


def test_the_label_is_a_setting(client, conversation, settings):
    settings.CHATWOOT_HANDOFF_LABEL = "test1"

    # The real payload as it is: label_list [] -> ["test1"].
    response = post_chatwoot(client, chatwoot_payload("conversation_updated_labels"))

    assert response.json()["outcome"] == "handoff_opened"


def test_resolving_in_chatwoot_gives_the_conversation_back(client, conversation):
    post_chatwoot(client, labels_changed(CHATWOOT_ID, [], ["humano"]))
    payload = chatwoot_payload("conversation_updated_labels")
    payload.update(event="conversation_status_changed", status="resolved")

    response = post_chatwoot(client, payload)

    conversation.refresh_from_db()
    assert response.json()["outcome"] == "given_back"
    assert conversation.controlled_by == Owner.AGENT


def test_our_mirrored_messages_and_the_leads_messages_are_ignored(client, conversation):
    echo = agent_message(CHATWOOT_ID, "resposta do agente", message_id=10)
    echo["content_attributes"] = {"sdr_ops_message_id": 123}
    bot = agent_message(CHATWOOT_ID, "resposta do agente", message_id=11)
    bot["sender"]["type"] = "agent_bot"
    incoming = chatwoot_payload("message_created_api_channel_docs")

    outcomes = [post_chatwoot(client, p).json()["outcome"] for p in (echo, bot, incoming)]

    assert outcomes == ["own_mirror", "own_mirror", "ignored_message"]
    assert not Message.objects.exists()
    conversation.refresh_from_db()
    assert conversation.controlled_by == Owner.AGENT


def test_a_conversation_found_by_the_contacts_phone_remembers_the_chatwoot_id(client):
    conversation = ConversationFactory(lead__phone="+5511999990077")
    payload = agent_message(555, "Olá")
    payload["conversation"]["meta"]["sender"]["phone_number"] = "+55 11 99999-0077"

    response = post_chatwoot(client, payload)

    conversation.refresh_from_db()
    assert response.json()["conversation"] == conversation.pk
    assert conversation.external_id == "555"


def test_a_closed_conversation_takes_no_chatwoot_message(client, conversation):
    Conversation.objects.filter(pk=conversation.pk).update(
        status=Conversation.Status.CLOSED, controlled_by=Owner.CLOSED
    )

    response = post_chatwoot(client, agent_message(CHATWOOT_ID, "Oi"))

    assert response.json()["outcome"] == "conversation_closed"
    assert not Message.objects.exists()


# --- Authentication ----------------------------------------------------------------------


def test_a_wrong_token_or_no_configured_token_is_a_404(client, conversation, settings):
    payload = agent_message(CHATWOOT_ID, "Oi")
    wrong = post_chatwoot(client, payload, token="guessed")
    settings.CHATWOOT_WEBHOOK_TOKEN = ""
    unset = post_chatwoot(client, payload, token=TOKEN)

    assert (wrong.status_code, wrong.json()["error"]) == (404, "not_found")
    assert unset.status_code == 404
    assert not Message.objects.exists()


def test_signed_deliveries_are_checked_when_a_secret_is_set(client, conversation, settings):
    settings.CHATWOOT_WEBHOOK_SECRET = SECRET
    now = int(time.time())

    unsigned = post_chatwoot(client, agent_message(CHATWOOT_ID, "a", message_id=1))
    forged = post_chatwoot(client, agent_message(CHATWOOT_ID, "b", message_id=2), secret="x")
    stale = post_chatwoot(
        client, agent_message(CHATWOOT_ID, "c", message_id=3), secret=SECRET, timestamp=now - 301
    )
    signed = post_chatwoot(client, agent_message(CHATWOOT_ID, "d", message_id=4), secret=SECRET)

    assert [r.status_code for r in (unsigned, forged, stale, signed)] == [401, 403, 403, 200]
    assert stale.json()["detail"] == "stale X-Chatwoot-Timestamp"
    assert list(Message.objects.values_list("body", flat=True)) == ["d"]


def test_the_signature_covers_the_body(client, conversation, settings):
    settings.CHATWOOT_WEBHOOK_SECRET = SECRET
    body = json.dumps(agent_message(CHATWOOT_ID, "original")).encode()
    stamp = str(int(time.time()))

    response = client.post(
        f"/webhooks/chatwoot/{TOKEN}/",
        body.replace(b"original", b"tampered"),
        content_type="application/json",
        headers={
            "X-Chatwoot-Timestamp": stamp,
            "X-Chatwoot-Signature": chatwoot_signature(secret=SECRET, timestamp=stamp, body=body),
        },
    )

    assert response.status_code == 403
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"null",
        b'{"event": 5}',
        b'{"event": "message_created", "conversation": "x", "sender": [], "content": {}}',
        b'{"event": "message_created", "message_type": "outgoing", "sender": {"type": "user"},'
        b' "conversation": {"id": {"a": 1}, "meta": {"sender": {"phone_number": 5}}}}',
        b'{"event": "conversation_updated", "changed_attributes": [1, {"label_list": 3}]}',
        b'{"event": "conversation_updated", "id": 49, "changed_attributes": '
        b'[{"label_list": {"previous_value": null, "current_value": ["humano", 7]}}]}',
        b'{"event": "conversation_status_changed", "status": "resolved", "id": "\\u0000"}',
        b'{"event": "message_created", "content": "\\u0000", "id": 1e400}',
        b'{"event": "message_created", "message_type": "outgoing", "sender": {"type": "user"},'
        b' "id": "\\u0000", "content": "a\\u0000b", "conversation": {"id": 49}}',
        b'{"event": "message_created", "message_type": "outgoing", "sender": {"type": "user"},'
        b' "id": 12, "content": "a\\u0000b", "conversation": {"id": "\\u0000"}}',
        b"[" * 5000,
    ],
)
def test_no_body_a_stranger_sends_makes_a_5xx(client, conversation, body):
    response = post_chatwoot(client, body)

    assert 200 <= response.status_code < 500
    assert isinstance(response.json(), dict)


def test_a_huge_body_is_refused_unread(client, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1000

    response = post_chatwoot(client, b"{" + b" " * 2000 + b"}")

    assert (response.status_code, response.json()["error"]) == (413, "too_large")


def test_get_is_refused_with_json(client):
    response = client.get(f"/webhooks/chatwoot/{TOKEN}/")

    assert (response.status_code, response.json()["error"]) == (405, "method_not_allowed")
