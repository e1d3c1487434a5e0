"""Intake stores a delivery with the least durable work: one INSERT and its task, one commit,
the chip from a short-lived cache."""

import time

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django_q.models import OrmQ

from channels.models import Chip, WebhookEvent
from core.metrics import metrics_flush
from tests.channels.test_webhook_intake import _closed_port
from tests.channels.webhooks import chip_for, load_fixture_json, post_webhook

pytestmark = pytest.mark.django_db


def zapi_text(message_id: str) -> dict:
    body = load_fixture_json("zapi", "received__text")
    body["messageId"] = message_id
    return body


@pytest.fixture
def buffered_metrics(settings):
    """Production's buffered counters (the suite writes them through)."""
    settings.METRICS_FLUSH_SECONDS = 3600
    yield
    metrics_flush()


@pytest.mark.django_db(transaction=True)
def test_a_delivery_is_two_inserts_in_one_transaction_once_its_chip_is_known(
    client, buffered_metrics
):
    chip = chip_for("zapi")
    assert post_webhook(client, chip, zapi_text("m1")).status_code == 200

    with CaptureQueriesContext(connection) as queries:
        response = post_webhook(client, chip, zapi_text("m2"))

    assert response.json() == {"status": "accepted", "event_id": response.json()["event_id"]}
    statements = [q["sql"] for q in queries]
    assert len(statements) == 4, statements
    begin, event, task, commit = statements
    assert (begin, commit) == ("BEGIN", "COMMIT")
    assert event.startswith('INSERT INTO "channels_webhookevent"')
    assert "ON CONFLICT DO NOTHING" in event
    assert task.startswith('INSERT INTO "django_q_ormq"')
    # The task row went in with the event: every stored event has its task.
    queued = sorted(task.task["args"][0] for task in OrmQ.objects.all())
    assert queued == sorted(WebhookEvent.objects.values_list("pk", flat=True))


def test_a_retried_delivery_answers_duplicate_and_queues_nothing(client):
    chip = chip_for("zapi")
    first = post_webhook(client, chip, zapi_text("m1")).json()

    again = post_webhook(client, chip, zapi_text("m1"))

    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "event_id": first["event_id"]}
    assert WebhookEvent.objects.count() == 1
    assert OrmQ.objects.count() == 1


def test_credentials_are_stripped_on_the_single_insert_too(client):
    chip = chip_for("zapi", webhook_token="zapi-secret")
    assert post_webhook(client, chip, zapi_text("m1")).status_code == 200
    assert "zapi-secret" not in str(WebhookEvent.objects.get().headers)


def test_a_chip_saved_through_the_orm_applies_to_the_next_delivery_at_once(client):
    chip = chip_for("zapi", webhook_token="old-token")
    assert post_webhook(client, chip, zapi_text("m1")).status_code == 200  # now cached

    chip.webhook_token = "new-token"
    chip.save()  # what the admin's change form does

    refused = post_webhook(
        client, chip, zapi_text("m2"), sign=False, headers={"z-api-token": "old-token"}
    )
    assert refused.status_code == 403
    assert post_webhook(client, chip, zapi_text("m3")).status_code == 200


def test_a_chip_deleted_is_unknown_at_once(client):
    chip = chip_for("zapi")
    assert post_webhook(client, chip, zapi_text("m1")).status_code == 200
    Chip.objects.get(pk=chip.pk).delete()
    assert post_webhook(client, chip, zapi_text("m2")).status_code == 404


def test_a_change_made_by_another_process_applies_once_the_entry_expires(client, settings):
    settings.WEBHOOK_CHIP_CACHE_SECONDS = 0.2
    chip = chip_for("zapi", webhook_token="old-token")
    old = {"z-api-token": "old-token"}
    assert post_webhook(client, chip, zapi_text("m1")).status_code == 200

    # No signal reaches this process when another one changes the row.
    Chip.objects.filter(pk=chip.pk).update(webhook_token="new-token")
    assert post_webhook(client, chip, zapi_text("m2"), sign=False, headers=old).status_code == 200
    time.sleep(0.25)

    assert post_webhook(client, chip, zapi_text("m3"), sign=False, headers=old).status_code == 403
    new = {"z-api-token": "new-token"}
    assert post_webhook(client, chip, zapi_text("m4"), sign=False, headers=new).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_database_down_with_the_chip_cached_is_still_503_and_stores_nothing(client):
    chip = chip_for("zapi")
    assert post_webhook(client, chip, zapi_text("m1")).status_code == 200
    default = connections["default"]
    original = dict(default.settings_dict)
    default.close()
    default.settings_dict["PORT"] = _closed_port()
    try:
        response = post_webhook(client, chip, zapi_text("m2"))
    finally:
        default.close()
        default.settings_dict.update(original)

    assert response.status_code == 503
    assert response["Retry-After"]
    assert WebhookEvent.objects.count() == 1
    assert post_webhook(client, chip, zapi_text("m2")).status_code == 200
    assert OrmQ.objects.count() == 2
