"""Two workers ingesting the same thing at once: the constraints decide, nothing doubles."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from channels.providers.base import InboundMessage
from conversations import ingest
from conversations.models import Conversation, Lead, LeadIdentity, Message
from tests.channels.webhooks import chip_for


def _run_concurrently(target, count: int = 4) -> list:
    barrier = threading.Barrier(count)
    results: list = []
    errors: list = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(target())
        except Exception as exc:  # collected and re-raised by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


@pytest.mark.django_db(transaction=True)
def test_same_new_lead_and_message_ingested_concurrently_is_stored_once():
    chip = chip_for("evolution")
    message = InboundMessage(
        provider_message_id="RACE1",
        sender_id="5511999990066@s.whatsapp.net",
        phone="+5511999990066",
        kind="text",
        text="oi",
        alt_sender_ids=("10000000000066@lid",),
    )
    results = _run_concurrently(lambda: ingest.inbound_message_ingest(chip=chip, message=message))

    assert sorted(result.outcome for result in results) == ["duplicate"] * 3 + ["stored"]
    assert Lead.objects.count() == 1
    assert LeadIdentity.objects.count() == 2
    assert Conversation.objects.count() == 1
    assert Message.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_distinct_messages_from_a_new_lid_sender_at_once_share_one_lead_and_conversation():
    chip = chip_for("zapi")
    counter = iter(range(100))
    lock = threading.Lock()

    def ingest_one():
        with lock:
            n = next(counter)
        return ingest.inbound_message_ingest(
            chip=chip,
            message=InboundMessage(
                provider_message_id=f"LID{n}",
                sender_id="10000000000077@lid",
                phone=None,
                kind="text",
                text=f"msg {n}",
            ),
        )

    results = _run_concurrently(ingest_one)
    assert [result.outcome for result in results] == ["stored"] * 4
    assert Lead.objects.count() == 1
    assert Conversation.objects.count() == 1
    assert Message.objects.count() == 4
