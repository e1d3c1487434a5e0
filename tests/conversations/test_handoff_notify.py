"""Slack notices for handoffs, with Slack's incoming webhook mocked at the HTTP transport.

The handoff opens the way it does in production (Chatwoot's real label
payload through the webhook URL); django-q2's sync mode runs the notice task
through the real worker code; the sweep is the periodic task function.
"""

import json
from datetime import timedelta

import httpx
import pytest
import respx
import time_machine
from django.urls import reverse
from django.utils import timezone
from django_q.conf import Conf

from conversations.models import Handoff
from conversations.tasks import handoff_sweep
from core.models import MetricCounter
from tests.conversations.chatwoot import TOKEN, labels_changed, post_chatwoot
from tests.factories.conversations import ConversationFactory, InboundMessageFactory

pytestmark = pytest.mark.django_db

SLACK = "https://hooks.slack.example/services/T000/B000/XXXX"


@pytest.fixture(autouse=True)
def notify_settings(settings, monkeypatch):
    settings.SLACK_WEBHOOK_URL = SLACK
    settings.CHATWOOT_WEBHOOK_TOKEN = TOKEN
    settings.CHATWOOT_WEBHOOK_SECRET = ""
    settings.CHATWOOT_URL = "https://chatwoot.example"
    settings.CHATWOOT_ACCOUNT_ID = "5"
    settings.PUBLIC_BASE_URL = "https://ops.example"
    settings.HANDOFF_REMIND_MINUTES = 10
    monkeypatch.setattr(Conf, "SYNC", True)
    return settings


@pytest.fixture
def slack():
    with respx.mock(assert_all_called=False) as router:
        yield router.post(SLACK)


@pytest.fixture
def conversation():
    conversation = ConversationFactory(
        external_id="49", lead__name="Daniella", lead__phone="+5511999990001"
    )
    for text in ("Oi", "Quanto custa?", "Quero falar com alguém", "Alô?"):
        InboundMessageFactory(conversation=conversation, body=text)
    return conversation


def slack_text(call):
    return json.loads(call.request.content)["text"]


def open_by_label(client, capture):
    with capture(execute=True):
        response = post_chatwoot(client, labels_changed(49, [], ["humano"]))
    assert response.json()["outcome"] == "handoff_opened"
    return Handoff.objects.get()


def test_an_opened_handoff_is_posted_to_slack_with_the_lead_reason_messages_and_links(
    client, conversation, slack, django_capture_on_commit_callbacks
):
    slack.mock(return_value=httpx.Response(200, text="ok"))

    handoff = open_by_label(client, django_capture_on_commit_callbacks)

    [call] = slack.calls
    text = slack_text(call)
    assert "Daniella (+5511999990001)" in text
    assert "Etiqueta no Chatwoot" in text
    # The last three messages, oldest first.
    assert text.index("Lead: Quanto custa?") < text.index("Lead: Alô?")
    assert "Lead: Oi\n" not in text
    assert f"https://ops.example/admin/conversations/conversation/{conversation.pk}/chat/" in text
    assert "https://chatwoot.example/app/accounts/5/conversations/49" in text
    handoff.refresh_from_db()
    assert handoff.notified_at is not None
    # Nothing left for the sweep.
    assert handoff_sweep() == {"expired": 0, "notified": 0, "reminded": 0}
    assert len(slack.calls) == 1


def test_slack_down_blocks_nothing_and_the_sweep_retries_until_it_takes_it(
    client, conversation, slack, django_capture_on_commit_callbacks
):
    slack.side_effect = [
        httpx.ConnectTimeout("slack is slow"),
        httpx.Response(500),
        httpx.Response(200, text="ok"),
    ]

    handoff = open_by_label(client, django_capture_on_commit_callbacks)
    assert handoff.notified_at is None

    assert handoff_sweep()["notified"] == 0
    assert handoff_sweep()["notified"] == 1
    assert handoff_sweep()["notified"] == 0

    handoff.refresh_from_db()
    assert handoff.notified_at is not None
    assert len(slack.calls) == 3
    outcomes = dict(
        MetricCounter.objects.filter(
            name="integration_requests_total", labels__contains='"handoff"'
        ).values_list("labels", "value")
    )
    assert sorted(outcomes.values()) == [1, 2]


def test_a_handoff_nobody_takes_is_reminded_once(
    client, conversation, slack, role_client, django_capture_on_commit_callbacks
):
    slack.mock(return_value=httpx.Response(200, text="ok"))
    open_by_label(client, django_capture_on_commit_callbacks)
    taken = ConversationFactory()
    sdr = role_client("sdr")
    with django_capture_on_commit_callbacks(execute=True):
        sdr.post(
            reverse("admin:conversations_conversation_changelist"),
            {"action": "take_over", "_selected_action": [taken.pk]},
        )

    with time_machine.travel(timezone.now() + timedelta(minutes=9)):
        assert handoff_sweep()["reminded"] == 0
    with time_machine.travel(timezone.now() + timedelta(minutes=11)):
        assert handoff_sweep()["reminded"] == 1
        assert handoff_sweep()["reminded"] == 0

    assert len(slack.calls) == 3  # two notices, one reminder (for the label's handoff)
    reminder = slack_text(slack.calls[-1])
    assert "Ninguém assumiu em 10 min" in reminder
    assert "Daniella" in reminder


def test_without_a_slack_url_nothing_is_sent(
    client, conversation, slack, settings, django_capture_on_commit_callbacks
):
    settings.SLACK_WEBHOOK_URL = ""

    open_by_label(client, django_capture_on_commit_callbacks)

    assert handoff_sweep() == {"expired": 0, "notified": 0, "reminded": 0}
    assert not slack.calls
