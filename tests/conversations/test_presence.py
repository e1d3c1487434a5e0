"""Typing presence when a turn starts: sent where the provider offers it, harmless when it fails.

HTTP is mocked at the transport (respx); the turn runs through the agent's task.
"""

import json

import httpx
import pytest
import respx
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agent import tasks
from conversations.models import Message
from conversations.presence import presence_typing
from core.metrics import metrics_flush
from core.models import MetricCounter
from tests.factories.agent import AgentProfileFactory
from tests.factories.channels import ChipFactory
from tests.factories.conversations import ConversationFactory, InboundMessageFactory

pytestmark = pytest.mark.django_db

EVOLUTION = "https://evo.example.test"
GRAPH = "https://graph.example.test/v21.0"


@pytest.fixture(autouse=True)
def no_burst_wait(settings):
    settings.AGENT_BURST_WINDOW_SECONDS = 0
    settings.OPENAI_API_KEY = ""  # flows and fallbacks only: no model call to mock


def inbound_on(chip, **kwargs):
    conversation = ConversationFactory(chip=chip, lead__phone="+5511988887777")
    return InboundMessageFactory(
        conversation=conversation, chip=chip, provider_message_id="wamid.ABC123", **kwargs
    )


def evolution_chip(**kwargs):
    return ChipFactory(
        provider="evolution",
        api_base_url=EVOLUTION,
        instance_id="inst1",
        api_token="evo-key",
        agent_profile=AgentProfileFactory(),
        **kwargs,
    )


def typing_count(outcome):
    metrics_flush()
    labels = json.dumps(
        {"integration": "evolution", "operation": "typing", "outcome": outcome}, sort_keys=True
    )
    row = MetricCounter.objects.filter(name="integration_requests_total", labels=labels).first()
    return row.value if row else 0


def test_evolution_shows_composing_when_a_turn_starts():
    message = inbound_on(evolution_chip())
    with respx.mock(assert_all_mocked=True) as router:
        presence = router.post(f"{EVOLUTION}/chat/sendPresence/inst1").respond(201, json={})
        tasks.answer_message(message.pk)

    assert presence.call_count == 1
    request = presence.calls.last.request
    assert request.headers["apikey"] == "evo-key"
    body = json.loads(request.content)
    assert body["number"] == "5511988887777"
    assert body["presence"] == "composing"
    assert body["delay"] > 0
    assert typing_count("ok") == 1
    # The turn was answered as usual.
    assert Message.objects.filter(reply_to=message).exists()


def test_the_typing_call_reuses_the_turns_conversation_lead_and_chip(settings):
    """The turn loaded them once; the typing call must not load them again per message."""
    settings.AGENT_BURST_WINDOW_SECONDS = 60  # the first task: typing, then the wait
    message = inbound_on(evolution_chip())
    with (
        respx.mock(assert_all_mocked=True) as router,
        CaptureQueriesContext(connection) as queries,
    ):
        presence = router.post(f"{EVOLUTION}/chat/sendPresence/inst1").respond(201, json={})
        assert tasks.answer_message(message.pk) == "waiting"

    assert presence.call_count == 1
    reloads = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith(('SELECT "channels_chip"', 'SELECT "conversations_lead"'))
    ]
    assert reloads == []


def test_meta_marks_the_message_read_with_the_typing_indicator():
    chip = ChipFactory(
        provider="meta", api_base_url=GRAPH, instance_id="1234567890", api_token="meta-token"
    )
    message = inbound_on(chip)
    with respx.mock(assert_all_mocked=True) as router:
        route = router.post(f"{GRAPH}/1234567890/messages").respond(200, json={"success": True})
        assert presence_typing(message=message) is True

    request = route.calls.last.request
    assert request.headers["Authorization"] == "Bearer meta-token"
    assert json.loads(request.content) == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.ABC123",
        "typing_indicator": {"type": "text"},
    }


def test_providers_without_a_presence_call_send_nothing():
    chip = ChipFactory(provider="zapi", api_base_url="https://zapi.example.test", instance_id="z")
    message = inbound_on(chip)
    with respx.mock(assert_all_mocked=True) as router:
        assert presence_typing(message=message) is False
    assert router.calls.call_count == 0


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, json={"error": "boom"}),
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
    ],
    ids=["500", "refused", "timeout"],
)
def test_a_failing_presence_call_never_costs_the_lead_their_reply(failure):
    message = inbound_on(evolution_chip())
    with respx.mock(assert_all_mocked=True) as router:
        route = router.post(f"{EVOLUTION}/chat/sendPresence/inst1")
        if isinstance(failure, Exception):
            route.side_effect = failure
        else:
            route.return_value = failure
        status = tasks.answer_message(message.pk)

    assert route.call_count == 1
    assert status in {"replied", "fallback"}
    assert Message.objects.filter(reply_to=message, status=Message.Status.QUEUED).exists()
    assert typing_count("error") == 1
