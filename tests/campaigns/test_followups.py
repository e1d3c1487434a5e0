"""Follow-ups with a controlled clock, through the periodic task and the real outbox."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from campaigns import services
from campaigns.models import Campaign
from campaigns.tasks import campaigns_tick
from conversations import outbox
from conversations.models import Conversation, Message
from tests.factories.conversations import HandoffFactory, InboundMessageFactory

pytestmark = pytest.mark.django_db

SP = ZoneInfo("America/Sao_Paulo")
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=SP)
TEXTS = "Conseguiu ver, {{nome}}?\n---\nÚltima tentativa, {{nome}}: posso ajudar?"


@pytest.fixture
def sent_campaign(provider_chip, make_campaign):
    """A running campaign whose first messages went out on Monday 10:00."""

    def make(n=1, **kwargs):
        campaign = make_campaign(
            [provider_chip()], n=n, follow_up_after_hours=24, follow_up_texts=TEXTS, **kwargs
        )
        with time_machine.travel(MONDAY_10, tick=False):
            services.campaign_start(campaign=campaign)
            outbox.outbox_drain()
        assert campaign.recipients.filter(status="sent").count() == n
        return campaign

    return make


def tick_and_send(at):
    with time_machine.travel(at, tick=False):
        report = campaigns_tick()
        outbox.outbox_drain()
    return report


def follow_ups(campaign):
    return Message.objects.filter(campaign=campaign, purpose=Message.Purpose.FOLLOW_UP)


def test_follow_ups_go_after_the_delay_one_per_rule_then_the_campaign_completes(
    fake_provider, sent_campaign
):
    campaign = sent_campaign()
    recipient = campaign.recipients.select_related("lead", "message").get()

    assert tick_and_send(MONDAY_10 + timedelta(hours=23, minutes=59))["follow_ups"] == 0
    assert tick_and_send(MONDAY_10 + timedelta(hours=24, minutes=1))["follow_ups"] == 1
    (first,) = follow_ups(campaign)
    assert first.status == Message.Status.SENT
    assert first.body == f"Conseguiu ver, {recipient.lead.name}?"
    assert first.chip_id == recipient.message.chip_id  # the same number
    assert first.conversation_id == recipient.message.conversation_id  # visible in the thread

    # The second waits 24 h after the first follow-up, not after the first message.
    assert tick_and_send(MONDAY_10 + timedelta(hours=47))["follow_ups"] == 0
    assert tick_and_send(MONDAY_10 + timedelta(hours=48, minutes=2))["follow_ups"] == 1
    assert follow_ups(campaign).filter(status="sent").count() == 2
    assert fake_provider.count() == 3

    report = tick_and_send(MONDAY_10 + timedelta(days=5))
    assert report["follow_ups"] == 0
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED


@pytest.mark.parametrize(
    "stop",
    ["replied", "opted_out", "handoff", "human", "closed"],
)
def test_no_follow_up_after_a_reply_an_opt_out_a_handoff_or_an_ended_conversation(
    fake_provider, sent_campaign, stop
):
    campaign = sent_campaign()
    recipient = campaign.recipients.select_related("lead").get()
    conversation = Conversation.objects.get(pk=recipient.conversation_id)
    with time_machine.travel(MONDAY_10 + timedelta(hours=2), tick=False):
        if stop == "replied":
            InboundMessageFactory(conversation=conversation, body="Oi, tenho interesse")
            Conversation.objects.filter(pk=conversation.pk).update(
                last_inbound_at=MONDAY_10 + timedelta(hours=2)
            )
        elif stop == "opted_out":
            recipient.lead.opted_out = True
            recipient.lead.save()
        elif stop == "handoff":
            HandoffFactory(conversation=conversation)
        elif stop == "human":
            Conversation.objects.filter(pk=conversation.pk).update(controlled_by="human")
        else:  # the agent ended it (not interested)
            Conversation.objects.filter(pk=conversation.pk).update(status="closed")

    report = tick_and_send(MONDAY_10 + timedelta(days=3))

    assert report["follow_ups"] == 0
    assert not follow_ups(campaign).exists()
    assert fake_provider.count() == 1  # the first message only


def test_a_follow_up_due_outside_the_send_window_waits_for_it(fake_provider, sent_campaign):
    campaign = sent_campaign(
        send_weekdays="01234", send_window_start=time(9), send_window_end=time(18)
    )
    Campaign.objects.filter(pk=campaign.pk).update(follow_up_after_hours=100)
    friday_night = MONDAY_10 + timedelta(days=4, hours=10)  # Friday 20:00, window closed

    assert tick_and_send(friday_night)["follow_ups"] == 1
    assert tick_and_send(friday_night + timedelta(days=1))["follow_ups"] == 0  # Saturday
    (follow_up,) = follow_ups(campaign)
    assert follow_up.status == Message.Status.QUEUED
    assert follow_up.next_attempt_at == datetime(2026, 11, 30, 9, 0, tzinfo=SP)
    assert fake_provider.count() == 1

    tick_and_send(datetime(2026, 11, 30, 9, 5, tzinfo=SP))
    follow_up.refresh_from_db()
    assert follow_up.status == Message.Status.SENT


def test_a_chip_that_may_not_follow_up_holds_them(fake_provider, sent_campaign):
    campaign = sent_campaign()
    campaign.chips.update(can_follow_up=False)

    tick_and_send(MONDAY_10 + timedelta(hours=25))

    (follow_up,) = follow_ups(campaign)
    assert follow_up.status == Message.Status.QUEUED
    assert follow_up.last_error == "Chip sem permissão para follow-up"
    assert fake_provider.count() == 1
