"""Live messages of one chip claimed together (OUTBOX_REPLY_BATCH), against the fake provider.

A chip answering many leads at once locks itself and runs its due query once
per batch; the batch is still sent one message after another, by one worker,
with the chip busy until the last answer is recorded.
"""

import itertools
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels.models import Chip
from conversations import outbox
from conversations.models import DeliveryAttempt, Message
from tests.factories.conversations import ConversationFactory
from tests.support.fake_provider import OK, SERVER_ERROR, rate_limited

pytestmark = pytest.mark.django_db


def replies(chip, n, purpose=Message.Purpose.REPLY):
    return [
        outbox.outbox_enqueue(
            conversation=ConversationFactory(chip=chip), body=f"reply-{i}", purpose=purpose
        )
        for i in range(n)
    ]


def chip_locks(queries) -> int:
    return sum(
        1 for q in queries if 'FROM "channels_chip"' in q["sql"] and "SKIP LOCKED" in q["sql"]
    )


def test_a_chip_answering_25_leads_is_locked_once_per_batch_and_sends_each_once_in_order(
    fake_provider, provider_chip, settings
):
    settings.OUTBOX_REPLY_BATCH = 10
    chip = provider_chip()
    queued = replies(chip, 25)

    with CaptureQueriesContext(connection) as queries:
        report = outbox.outbox_drain()

    assert report.sent == 25
    seen = fake_provider.seen()
    assert [r.body["text"] for r in seen] == [m.body for m in queued]
    # One chip, never two requests in flight.
    assert all(b.started >= a.finished for a, b in itertools.pairwise(seen))
    # Batches of 10, 10 and 5, then the look that finds nothing left.
    assert chip_locks(queries.captured_queries) == 4
    assert DeliveryAttempt.objects.filter(chip=chip).count() == 25
    chip.refresh_from_db()
    assert chip.next_send_at <= timezone.now()  # free once the last answer is recorded
    assert chip.reply_window_count == 25


def test_a_batch_keeps_its_chip_busy_until_its_last_answer_is_recorded(
    fake_provider, provider_chip
):
    chip = provider_chip()
    first, second, third = replies(chip, 3)

    claims = outbox.outbox_claim_batch(limit=2)

    assert [c.message_id for c in claims] == [first.pk, second.pk]
    assert [c.more_follow for c in claims] == [True, False]
    assert outbox.outbox_claim_next() is None  # another worker: the chip is taken
    with outbox.provider_client() as client:
        outbox.outbox_send_claimed(claim=claims[0], client=client)
        assert outbox.outbox_claim_next() is None  # still taken: the batch goes on
        outbox.outbox_send_claimed(claim=claims[1], client=client)
    claim = outbox.outbox_claim_next()
    assert claim is not None
    assert claim.message_id == third.pk


def test_a_failed_send_puts_the_rest_of_its_batch_back_unattempted(
    fake_provider, provider_chip, settings
):
    settings.OUTBOX_REPLY_BATCH = 5
    fake_provider.script(SERVER_ERROR)
    chip = provider_chip()
    failed, *others = replies(chip, 5)

    claims = outbox.outbox_claim_batch()
    assert len(claims) == 5
    with outbox.provider_client() as client:
        result = outbox.outbox_send_claimed(claim=claims[0], client=client)
    assert not result.ok
    assert outbox.outbox_release_claims(claims[1:]) == 4

    for message in others:
        message.refresh_from_db()
        assert message.status == Message.Status.QUEUED
        assert message.attempts == 0
        assert message.lease_owner == ""
    chip.refresh_from_db()
    assert chip.consecutive_failures == 1
    # The drain sends them next; the failed one waits for its retry.
    report = outbox.outbox_drain()
    assert report.sent == 4
    assert fake_provider.count() == 5
    failed.refresh_from_db()
    assert failed.status == Message.Status.QUEUED
    assert failed.attempts == 1
    assert failed.next_attempt_at > timezone.now()


def test_the_drain_stops_a_batch_when_the_provider_asks_it_to_wait(
    fake_provider, provider_chip, settings
):
    settings.OUTBOX_REPLY_BATCH = 5
    fake_provider.script(OK, rate_limited(60))
    chip = provider_chip()
    sent, limited, *rest = replies(chip, 5)

    report = outbox.outbox_drain()

    assert (report.sent, report.failed) == (1, 1)
    assert fake_provider.count() == 2  # the rest of the batch did not go
    sent.refresh_from_db()
    assert sent.status == Message.Status.SENT
    for message in [limited, *rest]:
        message.refresh_from_db()
        assert message.status == Message.Status.QUEUED
    assert [m.attempts for m in [limited, *rest]] == [1, 0, 0, 0]
    chip.refresh_from_db()
    assert chip.next_send_at >= timezone.now() + timedelta(seconds=55)  # the wait asked for


def test_a_send_that_could_outlive_the_lease_is_not_started(fake_provider, provider_chip, settings):
    """Slow sends must not leave the rest of a batch sending after its lease ran out."""
    settings.OUTBOX_REPLY_BATCH = 3
    # A send may take longer than the lease itself: only a batch's first goes.
    settings.OUTBOX_HTTP_TIMEOUT_SECONDS = settings.OUTBOX_LEASE_SECONDS
    chip = provider_chip()
    queued = replies(chip, 3)

    with CaptureQueriesContext(connection) as queries:
        report = outbox.outbox_drain()

    assert report.sent == 3
    assert [r.body["text"] for r in fake_provider.seen()] == [m.body for m in queued]
    assert all(m.attempts == 1 for m in Message.objects.filter(pk__in=[m.pk for m in queued]))
    # Three claims of one message sent each (the rest released), and the empty look.
    assert chip_locks(queries.captured_queries) == 4
    chip.refresh_from_db()
    assert chip.next_send_at <= timezone.now()


def test_business_messages_and_circuit_probes_are_never_batched(
    fake_provider, provider_chip, settings
):
    settings.OUTBOX_REPLY_BATCH = 10
    chip = provider_chip()
    replies(chip, 3, purpose=Message.Purpose.CAMPAIGN)

    assert len(outbox.outbox_claim_batch()) == 1

    probing = provider_chip()
    replies(probing, 3)
    Chip.objects.filter(pk=probing.pk).update(
        circuit_state=Chip.CircuitState.OPEN,
        circuit_retry_at=timezone.now() - timedelta(seconds=1),
    )
    claims = outbox.outbox_claim_batch()
    assert [c.probe for c in claims] == [True]
    assert claims[0].chip_id == probing.pk


def chip_writes(queries) -> int:
    return sum(1 for q in queries if q["sql"].startswith('UPDATE "channels_chip"'))


def chip_locks_for_update(queries) -> int:
    return sum(1 for q in queries if 'FROM "channels_chip"' in q["sql"] and "FOR " in q["sql"])


def test_a_success_mid_batch_leaves_the_chip_row_to_the_batch_s_last_answer(
    fake_provider, provider_chip
):
    chip = provider_chip()
    first, second = replies(chip, 2)
    claims = outbox.outbox_claim_batch(limit=2)

    with outbox.provider_client() as client, CaptureQueriesContext(connection) as queries:
        outbox.outbox_send_claimed(claim=claims[0], client=client)
    # Sent and recorded, with the chip neither locked nor written.
    assert chip_writes(queries.captured_queries) == 0
    assert not any('FROM "channels_chip"' in q["sql"] for q in queries.captured_queries)
    first.refresh_from_db()
    assert (first.status, first.provider_message_id) == (Message.Status.SENT, "FAKE000001")
    assert DeliveryAttempt.objects.get(message=first).outcome == DeliveryAttempt.Outcome.SENT

    with outbox.provider_client() as client, CaptureQueriesContext(connection) as queries:
        outbox.outbox_send_claimed(claim=claims[1], client=client)
    # The batch's last answer frees the chip by one conditional update, unlocked.
    assert chip_writes(queries.captured_queries) == 1
    assert chip_locks_for_update(queries.captured_queries) == 0
    chip.refresh_from_db()
    assert chip.last_sent_at == DeliveryAttempt.objects.get(message=second).started_at
    assert chip.next_send_at <= timezone.now()


def test_a_reply_sent_reads_only_whether_a_later_part_must_wait(fake_provider, provider_chip):
    """The claim loaded the message, its lead and chip, and when the lead started waiting."""
    chip = provider_chip()
    first, _second = replies(chip, 2)
    claims = outbox.outbox_claim_batch(limit=2)

    with outbox.provider_client() as client, CaptureQueriesContext(connection) as queries:
        outbox.outbox_send_claimed(claim=claims[0], client=client)

    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert len(reads) == 1
    assert '"conversations_message"."id" > ' in reads[0]  # the conversation's next part
    first.refresh_from_db()
    assert first.status == Message.Status.SENT


def test_a_claim_reads_as_much_for_ten_replies_as_for_two(provider_chip, settings):
    settings.OUTBOX_REPLY_BATCH = 10
    statements = []
    for n in (2, 10):
        replies(provider_chip(), n)
        with CaptureQueriesContext(connection) as queries:
            assert len(outbox.outbox_claim_batch()) == n
        statements.append(len(queries.captured_queries))
        Message.objects.filter(status=Message.Status.SENDING).update(
            status=Message.Status.SENT, sent_at=timezone.now()
        )

    assert statements[0] == statements[1]


def test_a_claim_of_replies_does_not_count_the_chip_s_sends_of_the_day(provider_chip):
    replies(provider_chip(), 3)

    with CaptureQueriesContext(connection) as queries:
        assert len(outbox.outbox_claim_batch()) == 3

    assert not any("conversations_deliveryattempt" in q["sql"] for q in queries.captured_queries)


def test_a_batch_s_last_reply_leaves_a_chip_another_worker_took_over_to_it(
    fake_provider, provider_chip
):
    chip = provider_chip()
    replies(chip, 1)
    [claim] = outbox.outbox_claim_batch()
    # This claim's lease ran out, and another worker holds the chip for its own send.
    theirs = timezone.now() + timedelta(seconds=90)
    Chip.objects.filter(pk=chip.pk).update(next_send_at=theirs)

    with outbox.provider_client() as client:
        assert outbox.outbox_send_claimed(claim=claim, client=client).ok

    chip.refresh_from_db()
    assert chip.next_send_at == theirs
    assert chip.last_sent_at is not None


def test_a_chip_with_failures_counted_records_each_success_of_a_batch(fake_provider, provider_chip):
    chip = provider_chip()
    Chip.objects.filter(pk=chip.pk).update(consecutive_failures=2)
    replies(chip, 2)
    claims = outbox.outbox_claim_batch(limit=2)

    with outbox.provider_client() as client:
        outbox.outbox_send_claimed(claim=claims[0], client=client)

    # The first success resets the count, as it would alone: a failure next
    # in the batch must count one, not three.
    chip.refresh_from_db()
    assert chip.consecutive_failures == 0


def test_a_mid_batch_success_whose_lease_was_taken_over_is_left_to_the_new_owner(
    fake_provider, provider_chip
):
    chip = provider_chip()
    first, _second = replies(chip, 2)
    claims = outbox.outbox_claim_batch(limit=2)
    # The lease ran out and another worker claimed the message again.
    Message.objects.filter(pk=first.pk).update(attempts=2)

    with outbox.provider_client() as client:
        result = outbox.outbox_send_claimed(claim=claims[0], client=client)

    assert result.ok
    first.refresh_from_db()
    assert first.status == Message.Status.SENDING  # the new owner's record decides
    assert DeliveryAttempt.objects.filter(message=first).count() == 1  # kept for the ops
