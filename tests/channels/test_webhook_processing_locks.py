"""Processing a stored event under lock contention: it waits for nothing it need not
lock, retries a passing database error, and never fails a lead's message for one."""

from __future__ import annotations

import pytest

from channels.models import WebhookEvent
from channels.services import webhook_event_process
from conversations.models import Message
from tests.channels.webhooks import chip_for, load_fixture, post_webhook
from tests.support.db_locks import lock_timeout, row_locked_elsewhere

pytestmark = pytest.mark.django_db(transaction=True)


def stored_text_event(client) -> WebhookEvent:
    chip = chip_for("zapi")
    response = post_webhook(client, chip, load_fixture("zapi", "received__text"))
    assert response.status_code == 200
    return WebhookEvent.objects.get(pk=response.json()["event_id"])


@pytest.fixture(autouse=True)
def _short_retries(settings):
    settings.DB_TRANSIENT_RETRY_SECONDS = [0.05, 0.2, 0.5]


def test_an_agent_writing_on_the_same_chip_does_not_block_processing(client):
    event = stored_text_event(client)
    lock_timeout(500)

    # An agent inserting a reply holds FOR KEY SHARE on the chip row until it commits.
    with row_locked_elsewhere(
        "SELECT 1 FROM channels_chip WHERE id = %s FOR KEY SHARE", event.chip_id
    ):
        status = webhook_event_process(event_id=event.pk)

    assert status == WebhookEvent.Status.PROCESSED
    assert Message.objects.filter(direction=Message.Direction.INBOUND).count() == 1


def test_a_lock_held_for_a_moment_is_waited_out_by_retrying(client):
    event = stored_text_event(client)
    lock_timeout(200)

    lock = "SELECT 1 FROM channels_webhookevent WHERE id = %s FOR UPDATE"
    with row_locked_elsewhere(lock, event.pk, release_after=0.3):
        status = webhook_event_process(event_id=event.pk)

    assert status == WebhookEvent.Status.PROCESSED
    event.refresh_from_db()
    assert event.attempts == 1
    assert Message.objects.filter(direction=Message.Direction.INBOUND).count() == 1


def test_a_persistent_transient_error_leaves_the_event_for_the_sweep_not_failed(client):
    event = stored_text_event(client)
    lock_timeout(100)

    lock = "SELECT 1 FROM channels_webhookevent WHERE id = %s FOR UPDATE"
    with row_locked_elsewhere(lock, event.pk):
        status = webhook_event_process(event_id=event.pk)

    assert status == WebhookEvent.Status.RECEIVED
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.RECEIVED
    assert event.error == ""
    # Once the other transaction is gone, the sweep's task processes it normally.
    assert webhook_event_process(event_id=event.pk) == WebhookEvent.Status.PROCESSED
