"""Issue 8, finding 6: wrong types in real payloads' fields are the documented payload error.

Before the fix each case below crashed the adapter (TypeError, OverflowError)
or the ingest (an id too long for its column), leaving a FAILED event in the
worker. Now the intake answers 400 and keeps the delivery as `invalid`, and a
row stored before the fix is marked `invalid` by the worker, not `failed`.
"""

from __future__ import annotations

from typing import Any

import pytest

from channels import tasks
from channels.models import WebhookEvent
from channels.providers.base import get_adapter
from tests.channels.webhooks import chip_for, load_fixture_json, post_webhook
from tests.factories.channels import WebhookEventFactory

META_VALUE = ("entry", 0, "changes", 0, "value")
LONG_ADDRESS = "5" * 300

CASES = [
    ("meta", "messages__text", (*META_VALUE, "messages"), 5),
    ("meta", "messages__text", (*META_VALUE, "contacts"), 7),
    ("meta", "statuses__failed", (*META_VALUE, "statuses"), 5),
    ("meta", "statuses__failed", (*META_VALUE, "statuses", 0, "errors"), 5),
    ("meta", "messages__text", (*META_VALUE, "messages", 0, "from"), LONG_ADDRESS),
    ("meta", "statuses__sent", (*META_VALUE, "statuses", 0, "status"), ["sent"]),
    ("evolution", "messages_upsert__text_incoming_v1", ("data", "key", "remoteJid"), LONG_ADDRESS),
    ("evolution", "messages_upsert__text_incoming_v1", ("data", "key", "id"), {"id": "x"}),
    ("zapi", "received__text", ("phone",), LONG_ADDRESS),
    ("zapi", "message_status__read", ("ids",), [{"id": "x"}]),
    ("zapi", "message_status__read", ("status",), ["READ"]),
    ("sandbox", "status__delivered", ("status",), ["delivered"]),
    ("sandbox", "connection__connected", ("status",), {"state": "connected"}),
    ("sandbox", "message__text", ("alt_ids",), 5),
    ("sandbox", "message__text", ("id",), [1]),
]


def _set(payload: Any, path: tuple, value: Any) -> Any:
    target = payload
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return payload


def _case_id(case: tuple) -> str:
    provider, fixture, path, value = case
    return f"{provider}-{fixture}-{path[-1]}-{type(value).__name__}"


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_wrong_types_are_400_and_kept_as_invalid(client, case):
    provider, fixture, path, value = case
    chip = chip_for(provider)
    payload = _set(load_fixture_json(provider, fixture), path, value)
    response = post_webhook(client, chip, payload)
    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["error"] == "invalid"
    event = WebhookEvent.objects.get(pk=answer["event_id"])
    assert event.status == WebhookEvent.Status.INVALID
    # Kept as sent, less the credential Evolution puts in its bodies (stripped at storing).
    assert {k: v for k, v in event.payload.items() if k != "apikey"} == {
        k: v for k, v in payload.items() if k != "apikey"
    }


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_a_stored_event_of_the_wrong_shape_is_invalid_in_the_worker_not_failed(case):
    provider, fixture, path, value = case
    chip = chip_for(provider)
    payload = _set(load_fixture_json(provider, fixture), path, value)
    event = WebhookEventFactory(chip=chip, provider=provider, payload=payload)
    assert tasks.process_webhook_event(event.pk) == WebhookEvent.Status.INVALID
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.INVALID
    assert event.error


TIMESTAMPS = [
    ("meta", "messages__text", (*META_VALUE, "messages", 0, "timestamp")),
    ("meta", "statuses__sent", (*META_VALUE, "statuses", 0, "timestamp")),
    ("evolution", "messages_upsert__text_incoming_v1", ("data", "messageTimestamp")),
    ("zapi", "received__text", ("momment",)),
    ("zapi", "message_status__read", ("momment",)),
    ("sandbox", "message__text", ("timestamp",)),
]


@pytest.mark.parametrize(("provider", "fixture", "path"), TIMESTAMPS)
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), {"low": 1e400}])
def test_infinite_timestamps_parse_as_no_timestamp(provider, fixture, path, value):
    """JSON cannot carry Infinity to the worker any more (the intake refuses it), but an
    adapter handed one, as Python's json module parses 1e999, must not crash."""
    payload = _set(load_fixture_json(provider, fixture), path, value)
    events = get_adapter(provider).parse_inbound(payload, {})
    assert events
    assert all(getattr(event, "timestamp", None) is None for event in events)
