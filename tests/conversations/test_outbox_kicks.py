"""A queued message asks for a sender only when one is needed.

While a worker holds the chip for a batch, that worker claims again once its
batch is recorded and takes what was queued meanwhile: one kick per reply
used to cost the sending cluster as much as the sends themselves.
"""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import OrmQ

from channels.models import Chip
from conversations import outbox
from conversations.models import Message
from tests.factories.conversations import ConversationFactory
from tests.support.fake_provider import OK, Reply

pytestmark = pytest.mark.django_db


def kicks() -> int:
    return sum(1 for q in OrmQ.objects.all() if q.task["func"].endswith("outbox_send_now"))


def reply(chip, body: str) -> Message:
    return outbox.outbox_enqueue(
        conversation=ConversationFactory(chip=chip), body=body, purpose=Message.Purpose.REPLY
    )


@pytest.mark.django_db(transaction=True)
def test_a_reply_queued_while_a_worker_sends_on_its_chip_leaves_with_that_worker(
    fake_provider, provider_chip
):
    # The first send takes a while at the provider: the chip is held meanwhile.
    fake_provider.route("/message/sendText/", Reply(hang=0.8), then=OK)
    chip = provider_chip()
    first = reply(chip, "primeira")  # autocommit: its kick is queued at once
    assert kicks() == 1
    OrmQ.objects.all().delete()  # that kick is the drain run below

    reports = []

    def drain() -> None:
        try:
            reports.append(outbox.outbox_drain(max_seconds=0))
        finally:
            connection.close()

    worker = threading.Thread(target=drain)
    worker.start()
    deadline = time.monotonic() + 5
    while not fake_provider.seen() and time.monotonic() < deadline:
        time.sleep(0.02)
    # Not answered yet: the worker still holds the chip.
    first.refresh_from_db()
    assert first.status == Message.Status.SENDING

    late = reply(chip, "segunda")
    assert kicks() == 0  # no second sender: the one holding the chip takes it
    worker.join(timeout=20)

    [report] = reports
    assert report.sent == 2
    assert [r.body["text"] for r in fake_provider.seen()] == ["primeira", "segunda"]
    late.refresh_from_db()
    assert late.status == Message.Status.SENT


@pytest.mark.parametrize(
    ("next_send_in", "kicked"),
    [
        (None, True),  # never sent
        (-5, True),  # free since 5 s
        (60, False),  # held: a worker's batch, or the provider's 429 wait
    ],
)
def test_a_kick_is_asked_for_unless_the_chip_is_held(
    provider_chip, django_capture_on_commit_callbacks, next_send_in, kicked
):
    chip = provider_chip()
    next_send_at = (
        None if next_send_in is None else timezone.now() + timedelta(seconds=next_send_in)
    )
    Chip.objects.filter(pk=chip.pk).update(next_send_at=next_send_at)

    with django_capture_on_commit_callbacks(execute=True):
        reply(chip, "oi")

    assert kicks() == (1 if kicked else 0)


def test_messages_queued_for_the_sweep_still_leave_once_the_provider_s_wait_is_over(
    fake_provider, provider_chip, django_capture_on_commit_callbacks
):
    """Skipping the kick loses nothing: the periodic sweep drains a chip once it is free."""
    from conversations import tasks

    chip = provider_chip()
    Chip.objects.filter(pk=chip.pk).update(next_send_at=timezone.now() + timedelta(seconds=0.3))
    with django_capture_on_commit_callbacks(execute=True):
        message = reply(chip, "oi")
    assert kicks() == 0

    assert tasks.outbox_sweep(max_seconds=3)["sent"] == 1
    message.refresh_from_db()
    assert message.status == Message.Status.SENT


def test_a_kick_that_finds_no_lease_lost_reads_the_leases_once_and_writes_nothing(
    provider_chip, settings
):
    chip = provider_chip()
    reply(chip, "oi")
    claim = outbox.outbox_claim_next()  # in flight, by this live process
    assert claim is not None

    with CaptureQueriesContext(connection) as queries:
        assert outbox.outbox_recover_expired_leases() == 0

    assert len(queries.captured_queries) == 1
    # Once its lease is over, the same look gives it back to the queue.
    later = timezone.now() + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS + 1)
    assert outbox.outbox_recover_expired_leases(now=later) == 1
    assert Message.objects.get(pk=claim.message_id).status == Message.Status.QUEUED
