"""Pacing by purpose: replies go in seconds, campaigns keep the chip's interval.

In-process drains against the local fake provider; the same rules under a
real qcluster are in test_outbox_cluster.py.
"""

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from channels.models import Chip
from conversations import outbox
from conversations.models import Message
from tests.factories.conversations import ConversationFactory

pytestmark = pytest.mark.django_db


def enqueue(conversation, body, purpose=Message.Purpose.REPLY):
    return outbox.outbox_enqueue(conversation=conversation, body=body, purpose=purpose)


def test_a_three_part_reply_reaches_the_provider_within_seconds_in_order(
    fake_provider, provider_chip, settings
):
    settings.OUTBOX_REPLY_GAP_SECONDS_PER_CHAR = 0.03
    settings.OUTBOX_REPLY_GAP_MIN_SECONDS = 0.5
    settings.OUTBOX_REPLY_GAP_MAX_SECONDS = 2.0
    # The chip's campaign pacing (30 s + jitter) must not touch a reply.
    chip = provider_chip(min_interval_seconds=30, jitter_seconds=15)
    conversation = ConversationFactory(chip=chip)
    parts = ["Oi, Ana!", "Temos horários amanhã de manhã e à tarde.", "Qual prefere?"]
    for part in parts:
        enqueue(conversation, part)

    report = outbox.outbox_drain(max_seconds=10)

    assert report.sent == 3
    seen = fake_provider.seen()
    assert [r.body["text"] for r in seen] == parts
    gaps = [b.started - a.finished for a, b in itertools.pairwise(seen)]
    # A typing-like pause scaled by the next part's length: the longer second
    # part waits longer than the short third one, both within the bounds.
    assert 0.5 * 0.9 <= gaps[1] < gaps[0] <= 2.0 + 0.5
    assert seen[-1].finished - seen[0].started < 5


def test_replies_ignore_the_campaign_interval_which_still_holds_between_campaign_messages(
    fake_provider, provider_chip
):
    chip = provider_chip(min_interval_seconds=30, jitter_seconds=0)
    campaign = [enqueue(ConversationFactory(chip=chip), f"camp-{i}", "campaign") for i in range(2)]
    replies = [enqueue(ConversationFactory(chip=chip), f"reply-{i}") for i in range(5)]

    outbox.outbox_drain()

    sent = [r.body["text"] for r in fake_provider.seen()]
    assert sent[:5] == [f"reply-{i}" for i in range(5)]
    assert sent[5:] == ["camp-0"]
    chip.refresh_from_db()
    assert chip.next_proactive_at >= timezone.now() + timedelta(seconds=29)
    # A reply queued now still goes at once; the second campaign message waits.
    late = enqueue(ConversationFactory(chip=chip), "late reply")
    outbox.outbox_drain()
    assert fake_provider.seen()[-1].body["text"] == "late reply"
    campaign[1].refresh_from_db()
    assert campaign[1].status == Message.Status.QUEUED
    remaining = outbox.outbox_seconds_until_ready()
    assert 28 <= remaining <= 30
    for message in [*replies, late]:
        message.refresh_from_db()
        assert message.status == Message.Status.SENT


def test_the_reply_ceiling_only_bites_past_its_rate_per_minute(
    fake_provider, provider_chip, settings
):
    settings.OUTBOX_REPLY_MAX_PER_MINUTE = 3
    chip = provider_chip()
    other = provider_chip()
    for i in range(5):
        enqueue(ConversationFactory(chip=chip), f"r{i}")
    enqueue(ConversationFactory(chip=other), "other chip")

    outbox.outbox_drain()

    sent = [r.body["text"] for r in fake_provider.seen()]
    assert sorted(sent) == ["other chip", "r0", "r1", "r2"]
    chip.refresh_from_db()
    assert chip.reply_window_count == 3
    assert 58 <= outbox.outbox_seconds_until_ready() <= 60
    # The next minute opens the ceiling again.
    Chip.objects.filter(pk=chip.pk).update(
        reply_window_started_at=timezone.now() - timedelta(seconds=61)
    )
    outbox.outbox_drain()
    assert fake_provider.count() == 6


def test_a_part_never_overtakes_an_earlier_part_waiting_for_a_retry(
    fake_provider, provider_chip, settings
):
    settings.OUTBOX_REPLY_GAP_MIN_SECONDS = 0.1
    chip = provider_chip()
    conversation = ConversationFactory(chip=chip)
    first = enqueue(conversation, "primeira parte")
    second = enqueue(conversation, "segunda parte")
    # The first part failed once and waits for its retry.
    retry_at = timezone.now() + timedelta(seconds=30)
    Message.objects.filter(pk=first.pk).update(next_attempt_at=retry_at, attempts=1)

    outbox.outbox_drain()

    assert fake_provider.count() == 0
    second.refresh_from_db()
    assert second.status == Message.Status.QUEUED
    assert second.next_attempt_at > retry_at
    assert "anterior" in second.last_error
    # When the first part's retry comes, both leave in order.
    Message.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now())
    outbox.outbox_drain(max_seconds=5)
    assert [r.body["text"] for r in fake_provider.seen()] == ["primeira parte", "segunda parte"]


def test_a_reply_waits_behind_no_campaign_backlog_on_its_chip(fake_provider, provider_chip):
    chip = provider_chip(min_interval_seconds=0)
    for i in range(20):
        enqueue(ConversationFactory(chip=chip), f"camp-{i}", "campaign")
    reply = enqueue(ConversationFactory(chip=chip), "resposta")

    outbox.outbox_drain()

    assert fake_provider.seen()[0].body["text"] == "resposta"
    reply.refresh_from_db()
    assert reply.status == Message.Status.SENT
