"""Campaign services through their real paths: the outbox, the quarantine, the task."""

from collections import Counter
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign, CampaignRecipient
from campaigns.rendering import template_variants
from campaigns.tasks import campaigns_tick
from channels import quarantine
from channels.models import Chip
from conversations import outbox
from conversations.models import Conversation, DeliveryAttempt, Message
from tests.campaigns.conftest import statuses
from tests.factories.conversations import (
    ConversationFactory,
    HandoffFactory,
    LeadFactory,
)
from tests.support.fake_provider import BAD_REQUEST, Reply

pytestmark = pytest.mark.django_db

SP = ZoneInfo("America/Sao_Paulo")


def first_messages(campaign):
    return Message.objects.filter(campaign=campaign, purpose=Message.Purpose.CAMPAIGN)


def test_start_queues_one_rendered_message_per_lead_and_counts_skips(
    provider_chip, make_campaign, django_capture_on_commit_callbacks
):
    chip = provider_chip()
    ana = LeadFactory(name="Ana Souza", company="Clínica Sol", attributes={"cidade": "Recife"})
    opted_out = LeadFactory(opted_out=True)
    with_human = ConversationFactory(controlled_by="human").lead
    in_handoff = HandoffFactory().conversation.lead
    other = make_campaign([chip], leads=[LeadFactory()])
    services.campaign_start(campaign=other)
    contacted = other.recipients.get().lead
    first_messages(other).update(status=Message.Status.SENT, sent_at=timezone.now())
    campaign = make_campaign(
        [chip],
        leads=[ana, opted_out, with_human, in_handoff, contacted],
        message_template="Oi {{nome}} da {{empresa}} em {{cidade}}! {{desconhecida}}",
    )

    with django_capture_on_commit_callbacks(execute=True):
        result = services.campaign_start(campaign=campaign)

    assert result.queued == 1
    assert result.skipped == {
        "opted_out": 1,
        "human_controlled": 1,
        "open_handoff": 1,
        "recently_contacted": 1,
    }
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    (message,) = first_messages(campaign)
    assert message.body == "Oi Ana Souza da Clínica Sol em Recife!"
    assert message.status == Message.Status.QUEUED
    recipient = campaign.recipients.get(lead=ana)
    assert recipient.message == message
    assert recipient.status == CampaignRecipient.Status.QUEUED
    assert recipient.conversation == message.conversation
    skipped = dict(
        campaign.recipients.filter(status="skipped").values_list("lead_id", "skip_reason")
    )
    assert skipped[opted_out.pk] == "opted_out"
    assert skipped[contacted.pk] == "recently_contacted"


def test_variants_are_chosen_per_lead_deterministically(provider_chip, make_campaign):
    template = "Olá {{nome}}!\n---\nOi {{nome}}, tudo bem?\n---\nBom dia, {{nome}}."
    campaign = make_campaign([provider_chip()], n=60, message_template=template)
    services.campaign_start(campaign=campaign)
    bodies = dict(first_messages(campaign).values_list("conversation__lead_id", "body"))
    used = Counter(body.split(" ")[0] for body in bodies.values())
    assert set(used) == {"Olá", "Oi", "Bom"}  # every variant is in use
    # The same leads in another run of the same campaign get the same texts.
    Message.objects.filter(campaign=campaign).delete()
    campaign.recipients.update(status="pending", message=None)
    Campaign.objects.filter(pk=campaign.pk).update(status="draft")
    services.campaign_start(campaign=campaign)
    again = dict(first_messages(campaign).values_list("conversation__lead_id", "body"))
    assert again == bodies
    assert len(template_variants(template)) == 3


def test_enqueue_query_count_does_not_grow_with_the_audience(provider_chip, make_campaign):
    chips = [provider_chip(), provider_chip()]
    counts = []
    for size in (10, 300):
        campaign = make_campaign(chips, n=size)
        with CaptureQueriesContext(connection) as queries:
            result = services.campaign_start(campaign=campaign)
        assert result.queued == size
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_recipients_spread_by_remaining_capacity_and_keep_their_chip(provider_chip, make_campaign):
    big = provider_chip(daily_cap=300)
    small = provider_chip(daily_cap=100)
    # A new number in warm-up: day 1 of 10 → 10% of its cap.
    warming = provider_chip(daily_cap=1000, warmup_days=10, warmup_started_on=timezone.localdate())
    known = LeadFactory()
    ConversationFactory(lead=known, chip=small)
    campaign = make_campaign([big, small, warming], n=499, leads=[known])

    services.campaign_start(campaign=campaign)

    per_chip = Counter(first_messages(campaign).values_list("chip_id", flat=True))
    # Weights 300:100:100 over 499 new leads, plus the known lead on its own chip.
    assert per_chip[big.pk] == pytest.approx(300 * 499 / 500, abs=1)
    assert per_chip[warming.pk] == pytest.approx(100 * 499 / 500, abs=1)
    assert per_chip[small.pk] == pytest.approx(100 * 499 / 500 + 1, abs=1)
    recipient = campaign.recipients.get(lead=known)
    assert recipient.chip == small
    assert recipient.message.conversation.chip == small
    assert Conversation.objects.filter(lead=known).count() == 1


def test_pause_holds_resume_sends_and_it_completes_by_itself(
    fake_provider, provider_chip, make_campaign, django_capture_on_commit_callbacks
):
    campaign = make_campaign([provider_chip()], n=3)
    services.campaign_start(campaign=campaign)
    services.campaign_pause(campaign=campaign, reason="Pausada por ana")

    outbox.outbox_drain()

    assert fake_provider.count() == 0
    assert set(first_messages(campaign).values_list("last_error", flat=True)) == {
        "Campanha pausada"
    }
    with django_capture_on_commit_callbacks(execute=True):
        services.campaign_resume(campaign=campaign)
        outbox.outbox_drain()

    assert fake_provider.count() == 3
    campaign.refresh_from_db()
    assert statuses(campaign) == {"sent": 3}
    assert campaign.status == Campaign.Status.COMPLETED
    assert campaign.finished_at is not None


def test_cancel_cancels_everything_pending_and_says_how_many(provider_chip, make_campaign):
    campaign = make_campaign([provider_chip()], n=5)
    services.campaign_start(campaign=campaign)
    first_messages(campaign).filter(pk=first_messages(campaign).first().pk).update(
        status=Message.Status.SENT
    )
    campaign.recipients.filter(message__status="sent").update(status="sent")

    dry = services.campaign_cancel(campaign=campaign, dry_run=True)
    assert dry.cancelled == 4
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.RUNNING

    result = services.campaign_cancel(campaign=campaign)

    assert result.cancelled == 4
    assert statuses(campaign) == {"sent": 1, "cancelled": 4}
    assert Counter(first_messages(campaign).values_list("status", flat=True)) == {
        "sent": 1,
        "cancelled": 4,
    }
    with pytest.raises(services.CampaignError):
        services.campaign_resume(campaign=campaign)


def test_campaign_window_holds_messages_until_it_opens(fake_provider, provider_chip, make_campaign):
    campaign = make_campaign(
        [provider_chip()],
        n=2,
        send_weekdays="01234",
        send_window_start=time(9),
        send_window_end=time(18),
    )
    saturday_noon = datetime(2026, 11, 21, 12, 0, tzinfo=SP)
    with time_machine.travel(saturday_noon, tick=False):
        services.campaign_start(campaign=campaign)
        outbox.outbox_drain()
    assert fake_provider.count() == 0
    monday_nine = datetime(2026, 11, 23, 9, 0, tzinfo=SP)
    assert set(first_messages(campaign).values_list("next_attempt_at", flat=True)) == {monday_nine}
    with time_machine.travel(datetime(2026, 11, 23, 8, 59, tzinfo=SP), tick=False):
        outbox.outbox_drain()
    assert fake_provider.count() == 0
    with time_machine.travel(monday_nine + timedelta(minutes=1), tick=False):
        outbox.outbox_drain()
    assert fake_provider.count() == 2


def test_blocked_chip_hands_its_unsent_first_messages_to_the_rest_of_the_pool(
    provider_chip, make_campaign
):
    a, b = provider_chip(), provider_chip()
    campaign = make_campaign([a, b], n=20)
    services.campaign_start(campaign=campaign)
    on_a = first_messages(campaign).filter(chip=a)
    assert on_a.count() == 10

    quarantine.chip_block(chips=Chip.objects.filter(pk=a.pk))

    assert not first_messages(campaign).filter(chip=a).exists()
    assert first_messages(campaign).filter(chip=b, status="queued").count() == 20
    for recipient in campaign.recipients.select_related("message__conversation"):
        assert recipient.chip == b
        assert recipient.message.conversation.chip == b
        assert recipient.message.conversation.lead_id == recipient.lead_id
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.RUNNING

    quarantine.chip_block(chips=Chip.objects.filter(pk=b.pk))

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert "nenhum outro chip" in campaign.paused_reason
    with pytest.raises(services.CampaignError, match="Nenhum chip"):
        services.campaign_resume(campaign=campaign)


def test_failure_rate_over_the_last_sends_pauses_and_alerts(
    fake_provider,
    provider_chip,
    make_campaign,
    settings,
    caplog,
    django_capture_on_commit_callbacks,
):
    settings.CAMPAIGN_FAILURE_WINDOW = 4
    settings.CAMPAIGN_FAILURE_RATE = 0.5
    settings.CIRCUIT_FAILURE_THRESHOLD = 100
    fake_provider.script(Reply(200), then=BAD_REQUEST)
    campaign = make_campaign([provider_chip()], n=10)
    services.campaign_start(campaign=campaign)

    with django_capture_on_commit_callbacks(execute=True):
        outbox.outbox_drain()

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert "3 de 4" in campaign.paused_reason
    # 1 sent + 3 failed, then the pause stopped the rest.
    assert DeliveryAttempt.objects.count() == 4
    assert statuses(campaign) == {"sent": 1, "failed": 3, "queued": 6}
    assert any("Campanha pausada" in r.getMessage() for r in caplog.records)


def test_the_scheduler_task_starts_due_campaigns_only(provider_chip, make_campaign):
    chip = provider_chip()
    now = timezone.now()
    due = make_campaign([chip], n=2, scheduled_at=now - timedelta(minutes=1))
    later = make_campaign([chip], n=2, scheduled_at=now + timedelta(hours=1))
    for campaign in (due, later):
        result = services.campaign_start(campaign=campaign, now=now - timedelta(hours=1))
        assert result.status == Campaign.Status.SCHEDULED

    report = campaigns_tick()

    assert report["started"] == 1
    due.refresh_from_db()
    later.refresh_from_db()
    assert due.status == Campaign.Status.RUNNING
    assert later.status == Campaign.Status.SCHEDULED
    assert first_messages(due).count() == 2
    assert not first_messages(later).exists()
