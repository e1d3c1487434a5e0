"""A big audience is queued as the chips send (CAMPAIGN_QUEUE_AHEAD), through the
start, the outbox and the scheduler's task."""

from collections import Counter

import pytest

from campaigns import services
from campaigns.models import Campaign
from campaigns.selectors import campaign_progress
from campaigns.tasks import campaigns_tick
from conversations import outbox
from conversations.models import Conversation, Lead, Message
from tests.campaigns.conftest import statuses
from tests.factories.conversations import HandoffFactory, LeadFactory

pytestmark = pytest.mark.django_db


def first_messages(campaign):
    return Message.objects.filter(campaign=campaign, purpose=Message.Purpose.CAMPAIGN)


def send_and_tick(fake_provider, capture) -> dict[str, int]:
    """What the workers do between two ticks: send what is queued, then the tick."""
    with capture(execute=True):
        outbox.outbox_drain()
        return campaigns_tick()


def test_a_big_audience_is_queued_as_the_chips_send_and_every_lead_gets_one_message(
    fake_provider, provider_chip, make_campaign, settings, django_capture_on_commit_callbacks
):
    settings.CAMPAIGN_QUEUE_AHEAD = 2
    chips = [provider_chip(), provider_chip()]
    late_opt_out = LeadFactory(opted_out=True)
    campaign = make_campaign(chips, n=9)
    campaign.recipients.create(lead=late_opt_out)

    dry = services.campaign_start(campaign=campaign, dry_run=True)
    result = services.campaign_start(campaign=campaign)

    assert (dry.queued, dry.waiting, dry.skipped) == (4, 5, {"opted_out": 1})
    # Two per chip now; the skip rules ran over the whole audience.
    assert (result.queued, result.waiting) == (4, 5)
    assert result.skipped == {"opted_out": 1}
    assert "4 mensagem(ns) na fila agora, mais 5 conforme os chips enviam" in result.message
    assert statuses(campaign) == {"queued": 4, "pending": 5, "skipped": 1}
    assert Counter(first_messages(campaign).values_list("chip_id", flat=True)) == {
        chip.pk: 2 for chip in chips
    }
    # No empty conversation for a lead the pool has not reached yet.
    assert Conversation.objects.filter(lead__campaign_recipients__campaign=campaign).count() == 4
    campaign.refresh_from_db()
    progress = campaign_progress(campaign)
    assert (progress.queued, progress.pending, progress.waiting) == (4, 5, 9)

    ticks = [send_and_tick(fake_provider, django_capture_on_commit_callbacks) for _ in range(4)]

    assert [tick["queued"] for tick in ticks] == [4, 1, 0, 0]
    assert fake_provider.count() == 9
    assert statuses(campaign) == {"sent": 9, "skipped": 1}
    sent_to = Counter(first_messages(campaign).values_list("conversation__lead_id", flat=True))
    assert set(sent_to.values()) == {1}
    assert len(sent_to) == 9
    assert late_opt_out.pk not in sent_to
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED


def test_a_lead_who_opts_out_or_is_handed_over_while_waiting_is_skipped_at_their_turn(
    fake_provider, provider_chip, make_campaign, settings, django_capture_on_commit_callbacks
):
    settings.CAMPAIGN_QUEUE_AHEAD = 1
    chip = provider_chip()
    first, opts_out, handed_over, last = (LeadFactory() for _ in range(4))
    campaign = make_campaign([chip], leads=[first, opts_out, handed_over, last])
    services.campaign_start(campaign=campaign)
    assert statuses(campaign) == {"queued": 1, "pending": 3}

    Lead.objects.filter(pk=opts_out.pk).update(opted_out=True)
    HandoffFactory(conversation__lead=handed_over, conversation__chip=chip)
    # One lead per tick: first is sent, the next two are skipped at their turn
    # (a skipped lead's place is filled at the next tick), the last is sent.
    ticks = [send_and_tick(fake_provider, django_capture_on_commit_callbacks) for _ in range(4)]

    assert [tick["queued"] for tick in ticks] == [0, 0, 1, 0]

    skipped = dict(
        campaign.recipients.filter(status="skipped").values_list("lead_id", "skip_reason")
    )
    assert skipped == {opts_out.pk: "opted_out", handed_over.pk: "open_handoff"}
    assert set(
        first_messages(campaign)
        .filter(status="sent")
        .values_list("conversation__lead_id", flat=True)
    ) == {first.pk, last.pk}
    assert fake_provider.count() == 2


def test_pause_stops_the_queueing_and_cancel_counts_the_waiting_audience(
    fake_provider, provider_chip, make_campaign, settings, django_capture_on_commit_callbacks
):
    settings.CAMPAIGN_QUEUE_AHEAD = 1
    campaign = make_campaign([provider_chip()], n=4)
    services.campaign_start(campaign=campaign)
    services.campaign_pause(campaign=campaign, reason="Pausada por ana")

    tick = send_and_tick(fake_provider, django_capture_on_commit_callbacks)

    assert tick["queued"] == 0
    assert fake_provider.count() == 0
    assert statuses(campaign) == {"queued": 1, "pending": 3}

    resumed = services.campaign_resume(campaign=campaign)
    assert (resumed.queued, resumed.waiting) == (0, 3)  # the one queued still fills the room
    send_and_tick(fake_provider, django_capture_on_commit_callbacks)
    assert statuses(campaign) == {"sent": 1, "queued": 1, "pending": 2}

    dry = services.campaign_cancel(campaign=campaign, dry_run=True)
    result = services.campaign_cancel(campaign=campaign)

    assert dry.cancelled == result.cancelled == 3
    assert statuses(campaign) == {"sent": 1, "cancelled": 3}
    assert send_and_tick(fake_provider, django_capture_on_commit_callbacks)["queued"] == 0
    assert fake_provider.count() == 1


def test_a_queue_ahead_of_zero_still_queues_one_per_chip(provider_chip, make_campaign, settings):
    settings.CAMPAIGN_QUEUE_AHEAD = 0
    campaign = make_campaign([provider_chip(), provider_chip()], n=5)

    result = services.campaign_start(campaign=campaign)

    assert (result.queued, result.waiting) == (2, 3)
