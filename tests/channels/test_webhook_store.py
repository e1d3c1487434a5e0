"""Intake stores a delivery with the least durable work: one INSERT and its task, one commit,
the chip from a short-lived cache."""

import json
import time

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django_q.models import OrmQ
from django_q.tasks import _sync

from channels import services
from channels.event_store import webhook_event_insert
from channels.models import Chip, WebhookEvent
from conversations.models import Message
from core.metrics import metrics_flush
from core.redaction import REDACTED
from tests.channels.test_webhook_intake import _closed_port
from tests.channels.webhooks import chip_for, load_fixture_json, meta_signature, post_webhook

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
def test_a_delivery_is_one_statement_with_its_task_once_its_chip_is_known(client, buffered_metrics):
    chip = chip_for("zapi")
    assert post_webhook(client, chip, zapi_text("m1")).status_code == 200

    with CaptureQueriesContext(connection) as queries:
        response = post_webhook(client, chip, zapi_text("m2"))

    assert response.json() == {"status": "accepted", "event_id": response.json()["event_id"]}
    statements = [q["sql"] for q in queries]
    # No BEGIN/COMMIT round trips: one statement in autocommit is its own commit.
    assert len(statements) == 1, statements
    [statement] = statements
    assert statement.startswith('WITH event AS (INSERT INTO "channels_webhookevent"')
    assert "ON CONFLICT DO NOTHING" in statement
    assert 'INSERT INTO "django_q_ormq"' in statement
    # The task row went in with the event: every stored event has its task,
    # naming the delivery by its chip and dedupe key.
    queued = sorted(task.task["args"] for task in OrmQ.objects.all())
    assert queued == [(chip.pk, "received:m1"), (chip.pk, "received:m2")]
    assert {task.task["func"] for task in OrmQ.objects.all()} == {
        "channels.tasks.process_webhook_delivery"
    }


@pytest.mark.django_db(transaction=True)
def test_the_task_written_with_the_event_processes_it_through_the_worker(client):
    chip = chip_for("zapi")
    event_id = post_webhook(client, chip, zapi_text("m1")).json()["event_id"]
    [queued] = OrmQ.objects.all()

    # django-q2's own worker and monitor code, as a cluster runs the package.
    _sync(queued.payload)

    event = WebhookEvent.objects.get(pk=event_id)
    assert event.status == WebhookEvent.Status.PROCESSED
    assert event.claimed_at is not None
    assert Message.objects.filter(provider_message_id="m1").count() == 1


def test_an_event_without_a_dedupe_key_still_queues_its_task_by_id():
    # Only a delivery whose parser crashed is stored without a key (the
    # adapters give every accepted shape one): its task cannot name it by key.
    chip = chip_for("zapi")
    event_id = services._event_store(
        chip_id=chip.pk, provider="zapi", event_type="odd", dedupe_key="", payload={"odd": 1}
    )

    assert WebhookEvent.objects.get(pk=event_id).payload == {"odd": 1}
    [queued] = OrmQ.objects.all()
    assert queued.task["func"] == "channels.tasks.process_webhook_event"
    assert queued.task["args"] == (event_id,)


def test_the_insert_stores_every_column_as_the_orm_would():
    chip = chip_for("zapi")
    values = {
        "provider": "zapi",
        "event_type": "ReceivedCallback",
        "payload": {"text": {"message": "oi"}, "apikey": "secret-in-body"},
        "headers": {"content-type": "application/json"},
    }
    by_orm = WebhookEvent.objects.create(chip=chip, dedupe_key="orm", **values)

    event_id = webhook_event_insert(chip_id=chip.pk, dedupe_key="insert", **values)

    def stored(pk: int) -> dict:
        row = WebhookEvent.objects.filter(pk=pk).values().get()
        assert row["received_at"] is not None
        assert row["queued_at"] is not None
        return {
            name: value
            for name, value in row.items()
            if name not in {"id", "dedupe_key", "received_at", "queued_at"}
        }

    assert stored(event_id) == stored(by_orm.pk)
    assert stored(event_id)["payload"]["apikey"] != "secret-in-body"
    assert webhook_event_insert(chip_id=chip.pk, dedupe_key="insert", **values) is None


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


def test_the_body_is_stored_as_received_unless_a_credential_was_stripped(client):
    chip = chip_for("evolution", webhook_token="evo-token")
    body = load_fixture_json("evolution", "messages_upsert__text_incoming_v1")
    body["apikey"] = "instance-key-1234"
    quiet = json.loads(json.dumps(body))
    quiet["apikey"] = None
    quiet["data"]["key"]["id"] = "ANOTHER-ID"
    quiet["data"]["price"] = 1.10
    for payload in (body, quiet):
        assert post_webhook(client, chip, payload).status_code == 200
    loud, calm = WebhookEvent.objects.order_by("pk")
    assert loud.payload["apikey"] == REDACTED
    assert loud.payload["data"] == body["data"]
    assert calm.payload == quiet


def test_the_stored_headers_are_the_requests_by_lower_case_name_with_credentials_hidden(client):
    chip = chip_for("zapi", webhook_token="zapi-secret")
    headers = {"X-Request-Id": "req-1", "User-Agent": "Z-API/2.0", "Z-Api-Token": "zapi-secret"}
    response = post_webhook(client, chip, zapi_text("m1"), headers=headers, sign=False)
    assert response.status_code == 200, response.content
    stored = WebhookEvent.objects.get().headers
    assert stored["x-request-id"] == "req-1"
    assert stored["user-agent"] == "Z-API/2.0"
    assert stored["content-type"] == "application/json"
    assert stored["content-length"] == str(len(json.dumps(zapi_text("m1"))))
    assert stored["z-api-token"] == REDACTED
    assert all(name == name.lower() for name in stored)


def test_a_credential_header_is_found_whatever_its_case(client):
    chip = chip_for("meta")
    body = json.dumps(load_fixture_json("meta", "messages__text")).encode()
    signature = meta_signature(chip.app_secret, body)
    response = post_webhook(
        client, chip, body, headers={"x-HUB-signature-256": signature}, sign=False
    )
    assert response.status_code == 200, response.content


def test_a_body_with_a_byte_order_mark_is_stored(client):
    chip = chip_for("zapi")
    body = b"\xef\xbb\xbf" + json.dumps(zapi_text("bom")).encode()
    response = post_webhook(client, chip, body)
    assert response.status_code == 200, response.content
    assert WebhookEvent.objects.get().payload["messageId"] == "bom"


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
