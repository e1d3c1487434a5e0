"""The burst window counts from the moment the lead's message reached us, not from storage.

The time a delivery waited in intake's line is part of the lead's wait: it
must not be added on top of the window. But a message the lead sent inside
the window that still waits in line must not be left out of the turn: then
the window counts from storage, as it did before.
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ

from agent import tasks
from agent.turns import turn_due_at
from channels import tasks as channel_tasks
from channels.models import WebhookEvent
from conversations.models import Message
from tests.agent.held_tasks import held_answers
from tests.channels.webhooks import post_webhook
from tests.factories.agent import AgentProfileFactory
from tests.factories.channels import ChipFactory, WebhookEventFactory
from tests.factories.conversations import ConversationFactory, InboundMessageFactory
from tests.support.fake_openai import completion

pytestmark = pytest.mark.django_db

WINDOW = 4.0


@pytest.fixture
def chip(sandbox_chip, settings):
    settings.AGENT_BURST_WINDOW_SECONDS = WINDOW
    settings.AGENT_BURST_MAX_WAIT_SECONDS = 15
    sandbox_chip.agent_profile = AgentProfileFactory()
    sandbox_chip.save()
    return sandbox_chip


def deliver(client, chip, seq: int, text: str, *, waited: float) -> int:
    """A lead's message posted to the webhook, left `waited` seconds in intake's line."""
    payload = {"type": "message", "id": f"sbx-arr-{seq}", "from": "+5511977776666", "text": text}
    event_id = post_webhook(client, chip, payload).json()["event_id"]
    WebhookEvent.objects.filter(pk=event_id).update(
        received_at=timezone.now() - timedelta(seconds=waited)
    )
    return event_id


def test_the_time_a_message_waited_in_intake_counts_as_part_of_the_window(client, chip):
    event_id = deliver(client, chip, 1, "oi", waited=3)
    OrmQ.objects.all().delete()
    channel_tasks.process_webhook_event(event_id)
    message = Message.objects.get(direction="in")
    event = WebhookEvent.objects.get(pk=event_id)
    assert message.received_at == event.received_at
    assert (message.created_at - message.received_at).total_seconds() >= 3

    OrmQ.objects.all().delete()
    assert tasks.answer_message(message.pk) == "waiting"

    # Quiet 4 s after it reached us: about 1 s from now, not 4 s after storage.
    [(args, _kwargs, due)] = held_answers()
    assert args == (message.pk,)
    assert due == message.received_at + timedelta(seconds=WINDOW)


def test_a_message_still_in_intake_s_line_joins_the_turn_instead_of_a_second_answer(
    client, chip, fake_openai
):
    first_event = deliver(client, chip, 1, "oi", waited=6)
    # The lead's second message arrived 3 s ago, inside the first one's
    # window, and is still waiting for an intake worker.
    second_event = deliver(client, chip, 2, "quero um orçamento", waited=3)
    OrmQ.objects.all().delete()
    channel_tasks.process_webhook_event(first_event)
    first = Message.objects.get(direction="in")
    OrmQ.objects.all().delete()

    # By arrival, its only stored message's window ended 2 s ago; but part of
    # the burst is not stored yet: the window counts from storage instead.
    assert tasks.answer_message(first.pk) == "waiting"
    [(args, kwargs, due)] = held_answers()
    assert due == first.created_at + timedelta(seconds=WINDOW)
    # Not planned yet (agent.plan_ahead): the rest of the burst is still in line.
    assert not fake_openai.requests

    OrmQ.objects.all().delete()
    channel_tasks.process_webhook_event(second_event)
    second = Message.objects.get(direction="in", body="quero um orçamento")
    assert tasks.answer_message(second.pk) == "busy"  # the waiting turn takes it along

    fake_openai.script(completion("Oi! Para quantas pessoas?"))
    OrmQ.objects.all().delete()
    # Now the lead must be quiet for the window after the second message (it arrived 3 s ago).
    second_due = second.received_at + timedelta(seconds=WINDOW)
    assert tasks.answer_message(*args, **kwargs) == "waiting"
    [(args, kwargs, due)] = held_answers()
    assert (args, due) == ((second.pk,), second_due)

    Message.objects.filter(direction="in").update(
        received_at=timezone.now() - timedelta(seconds=WINDOW + 1)
    )
    assert tasks.answer_message(*args, **kwargs) == "replied"
    [reply] = Message.objects.filter(direction="out")
    assert (reply.reply_to_id, reply.body) == (second.pk, "Oi! Para quantas pessoas?")
    # Planned once, for both messages, during the second one's window.
    [request] = fake_openai.requests
    assert [m["content"] for m in request.body["messages"][1:]] == ["oi", "quero um orçamento"]


@pytest.mark.parametrize(
    ("other_chip", "received_before_lead", "status", "waits"),
    [
        (False, False, WebhookEvent.Status.RECEIVED, True),
        (True, False, WebhookEvent.Status.RECEIVED, False),  # another number's line
        (False, True, WebhookEvent.Status.RECEIVED, False),  # before the lead's message
        (False, False, WebhookEvent.Status.PROCESSED, False),  # already stored
    ],
)
def test_only_this_chip_s_unprocessed_deliveries_inside_the_window_hold_the_turn(
    chip, other_chip, received_before_lead, status, waits
):
    now = timezone.now()
    conversation = ConversationFactory(chip=chip)
    message = InboundMessageFactory(conversation=conversation, body="oi")
    # Arrived 6 s ago, stored 1 s ago.
    Message.objects.filter(pk=message.pk).update(
        received_at=now - timedelta(seconds=6), created_at=now - timedelta(seconds=1)
    )
    message.refresh_from_db()
    event = WebhookEventFactory(
        chip=ChipFactory(provider="sandbox") if other_chip else chip, status=status
    )
    offset = 7 if received_before_lead else 3
    WebhookEvent.objects.filter(pk=event.pk).update(received_at=now - timedelta(seconds=offset))

    due = turn_due_at([message], chip_id=chip.pk, now=now)

    by_arrival = message.received_at + timedelta(seconds=WINDOW)
    by_storage = message.created_at + timedelta(seconds=WINDOW)
    assert due == (by_storage if waits else by_arrival)


def test_a_lead_who_keeps_typing_while_intake_lags_is_still_answered_after_the_longest_wait(
    chip,
):
    now = timezone.now()
    conversation = ConversationFactory(chip=chip)
    turn = []
    for seconds_ago in (12, 9, 6, 3, 0):  # stored 3 s apart: never quiet for 4 s
        message = InboundMessageFactory(conversation=conversation, body=f"parte {seconds_ago}")
        Message.objects.filter(pk=message.pk).update(
            created_at=now - timedelta(seconds=seconds_ago),
            received_at=now - timedelta(seconds=seconds_ago + 5),
        )
        message.refresh_from_db()
        turn.append(message)
    # A delivery received after the last message and before its window ended is still in line.
    event = WebhookEventFactory(chip=chip)
    WebhookEvent.objects.filter(pk=event.pk).update(received_at=now - timedelta(seconds=3))

    # 15 s after the burst began, by storage.
    assert turn_due_at(turn, chip_id=chip.pk, now=now) == turn[0].created_at + timedelta(seconds=15)
