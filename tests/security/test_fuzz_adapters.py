"""Issue 8, finding 6: fuzz every provider adapter with mutated real payloads.

Each example takes a real payload from tests/fixtures/payloads/ (W-API has
none: the inline body the W-API tests use), changes one to three values
anywhere in it (another JSON type, a huge or infinite number, an id too long
for its column, a removed field, a value wrapped in a list), and feeds it to
the adapter. Only the documented PayloadError may escape, and what comes out
must be what the ingest can store. The number of examples comes from the
Hypothesis profile (tests/conftest.py: `ci` by default, HYPOTHESIS_PROFILE=
thorough for a long run).

A second test sends mutated payloads through the real webhook URL and the
worker's task: the intake answers 200 or 400, never 5xx, and no accepted event
ends FAILED (before the fix, wrong types crashed the adapters in the worker).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels import tasks
from channels.models import Chip, Provider, WebhookEvent
from channels.providers.base import (
    ConnectionUpdate,
    Ignored,
    InboundMessage,
    PayloadError,
    StatusUpdate,
    get_adapter,
)
from tests.channels.webhooks import FIXTURES, chip_for, fixture_files, post_webhook

WAPI_TEXT = {
    "event": "webhookReceived",
    "instanceId": "wapi-instance",
    "messageId": "W1",
    "fromMe": False,
    "sender": {"id": "5511999990055", "pushName": "Contato"},
    "chat": {"id": "5511999990055"},
    "msgContent": {"conversation": "oi"},
    "moment": 1763780000,
}


def _seeds() -> dict[str, list[Any]]:
    seeds: dict[str, list[Any]] = {provider: [] for provider in Provider.values}
    for path in fixture_files():
        seeds[path.parent.name].append(json.loads(path.read_bytes()))
    seeds["wapi"].append(WAPI_TEXT)
    return seeds


SEEDS = _seeds()


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


KEYS = sorted({key for payloads in SEEDS.values() for p in payloads for key in _keys(p)})

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e300])
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "",
            "x" * 300,
            "5511999990000@s.whatsapp.net",
            "123456789@lid",
            "120363@g.us",
            "READ",
            "DELIVERY_ACK",
            "open",
            "messages",
            "statuses",
            "1e999",
            "Infinity",
            "-1",
            "99999999999999999999",
        ]
    )
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


# Half the replacements are one of these: each is another JSON type than a
# real field holds, a value a column cannot hold, or a number time cannot hold.
confusers = st.sampled_from(
    [None, True, 0, 5, -1, float("inf"), float("-inf"), "text", "x" * 300, [], [1], {}, {"a": 1}]
)
replacements = confusers | json_values


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _mutate(payload: Any, path: tuple, operation: str, new: Any) -> Any:
    if not path:
        return new if operation == "replace" else [payload]
    parent = payload
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if operation == "delete":
        del parent[last]
    elif operation == "wrap":
        parent[last] = [parent[last]]
    else:
        parent[last] = new
    return payload


@st.composite
def mutated(draw: st.DrawFn, provider: str) -> Any:
    payload = copy.deepcopy(draw(st.sampled_from(SEEDS[provider])))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(list(_paths(payload))))
        operation = draw(st.sampled_from(["replace", "replace", "delete", "wrap"]))
        # A copy: a later mutation must not change the sampled constant itself.
        payload = _mutate(payload, path, operation, copy.deepcopy(draw(replacements)))
    return payload


def _assert_storable(event: Any) -> None:
    """What comes out is what the ingest can store."""
    if isinstance(event, InboundMessage):
        assert isinstance(event.provider_message_id, str)
        assert 0 < len(event.provider_message_id) <= 255
        assert isinstance(event.sender_id, str)
        assert 0 < len(event.sender_id) <= 255
        assert event.phone is None or event.phone.startswith("+")
        assert all(isinstance(a, str) and 0 < len(a) <= 255 for a in event.alt_sender_ids)
        for text in (event.text, event.sender_name, event.media_url, event.media_mime_type):
            assert isinstance(text, str)
        assert isinstance(event.from_me, bool)
        assert event.timestamp is None or isinstance(event.timestamp, datetime)
    elif isinstance(event, StatusUpdate):
        assert isinstance(event.provider_message_id, str)
        assert 0 < len(event.provider_message_id) <= 255
        assert event.status in {"sent", "delivered", "read", "failed"}
        assert event.timestamp is None or isinstance(event.timestamp, datetime)
        assert isinstance(event.error_code, str)
        assert isinstance(event.error, str)
    elif isinstance(event, ConnectionUpdate):
        assert event.status is None or event.status in Chip.Status.values
        assert isinstance(event.qr_code, str)
        assert isinstance(event.quality_rating, str)
    else:
        assert isinstance(event, Ignored)
        assert isinstance(event.reason, str)


@pytest.mark.parametrize("provider", Provider.values)
def test_adapters_raise_only_the_documented_payload_error(provider):
    adapter = get_adapter(provider)
    chip = Chip(provider=provider, instance_id="fuzz-instance")
    assert SEEDS[provider], f"no seed payload for {provider}"

    @settings(suppress_health_check=[HealthCheck.too_slow])
    @given(payload=mutated(provider))
    def run(payload: Any) -> None:
        # The lenient readers the intake calls on any JSON: total, bounded.
        event_type = adapter.event_type(payload)
        assert isinstance(event_type, str)
        assert len(event_type) <= 100
        dedupe_key = adapter.dedupe_key(payload, {})
        assert isinstance(dedupe_key, str)
        label = adapter.metric_event(event_type)
        assert label in adapter.known_events | {"", "other"}
        assert isinstance(adapter.names_other_instance(chip, payload), bool)
        try:
            events = adapter.parse_inbound(payload, {})
        except PayloadError:
            return
        assert isinstance(events, list)
        for event in events:
            _assert_storable(event)

    run()


@pytest.mark.django_db
@pytest.mark.parametrize("provider", Provider.values)
def test_mutated_payloads_through_the_webhook_and_the_worker(client, provider):
    chip = chip_for(provider)

    @settings(
        max_examples=settings.default.max_examples // 2 or 1,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(payload=mutated(provider))
    def run(payload: Any) -> None:
        response = post_webhook(client, chip, payload)
        assert response.status_code in (200, 400), response.content
        if response.status_code == 200 and response.json()["status"] == "accepted":
            event_id = response.json()["event_id"]
            tasks.process_webhook_event(event_id)
            event = WebhookEvent.objects.get(pk=event_id)
            assert event.status != WebhookEvent.Status.FAILED, event.error

    run()


def test_every_fixture_provider_has_seeds():
    assert {path.name for path in FIXTURES.iterdir() if path.is_dir()} <= set(SEEDS)
    assert all(SEEDS[provider] for provider in Provider.values)
