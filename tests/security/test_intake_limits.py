"""Issue 8, finding 4: a leaked chip key is bounded (429 past the chip's limits) and
cannot create metric series (labels come from fixed sets)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis
import time_machine
from prometheus_client import REGISTRY

from channels import intake_limits
from channels.intake_limits import intake_limits_reset
from channels.models import WebhookEvent
from tests.channels.webhooks import chip_for, post_webhook

pytestmark = pytest.mark.django_db

REDIS_TEST_URL = "redis://127.0.0.1:6379/3"


def _message(number: int, text: str = "oi") -> dict:
    return {"type": "message", "id": f"m{number}", "from": "+5511999990000", "text": text}


@pytest.fixture(autouse=True)
def early_in_a_window():
    """Start 5 s into an hour (and a minute), so no test straddles a window's end."""
    start = datetime.now(UTC).replace(minute=0, second=5, microsecond=0) + timedelta(hours=1)
    with time_machine.travel(start, tick=True):
        yield


@pytest.fixture(params=["memory", "redis"])
def backend(request, settings):
    settings.WEBHOOK_LIMIT_BACKEND = request.param
    settings.REDIS_URL = REDIS_TEST_URL
    intake_limits_reset()
    yield request.param
    intake_limits_reset()


def test_deliveries_past_the_per_minute_limit_are_429_with_retry_after(client, settings, backend):
    settings.WEBHOOK_RATE_LIMIT_PER_MINUTE = 3
    chip, other = chip_for("sandbox"), chip_for("sandbox")
    for number in range(3):
        assert post_webhook(client, chip, _message(number)).status_code == 200
    response = post_webhook(client, chip, _message(3))
    assert response.status_code == 429
    assert response.json()["error"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60
    # Refused before storing: the provider delivers it again later.
    assert WebhookEvent.objects.filter(chip=chip).count() == 3
    # Another chip has its own budget.
    assert post_webhook(client, other, _message(3)).status_code == 200


def test_bytes_past_the_hourly_storage_budget_are_429_and_do_not_use_it_up(
    client, settings, backend
):
    chip = chip_for("sandbox")
    settings.WEBHOOK_STORAGE_BUDGET_BYTES_PER_HOUR = 2_000
    assert post_webhook(client, chip, _message(0)).status_code == 200  # ~80 bytes
    big = _message(1, text="x" * 1_500)
    assert post_webhook(client, chip, big).status_code == 200
    response = post_webhook(client, chip, _message(2, text="y" * 1_500))
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 3600
    assert "bytes per hour" in response.json()["detail"]
    # The refused body's bytes were given back: a small delivery still fits.
    assert post_webhook(client, chip, _message(3)).status_code == 200
    assert WebhookEvent.objects.filter(chip=chip).count() == 3


def test_refused_credentials_do_not_use_up_a_chips_budget(client, settings, backend):
    settings.WEBHOOK_RATE_LIMIT_PER_MINUTE = 1
    chip = chip_for("sandbox", webhook_token="tok")
    for number in range(5):
        response = post_webhook(client, chip, _message(number), headers={"X-Sandbox-Token": "no"})
        assert response.status_code == 403
    assert post_webhook(client, chip, _message(9)).status_code == 200


def test_a_redis_outage_never_refuses_a_delivery(client, settings):
    settings.WEBHOOK_LIMIT_BACKEND = "redis"
    settings.WEBHOOK_RATE_LIMIT_PER_MINUTE = 1
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    chip = chip_for("sandbox")
    for number in range(3):
        assert post_webhook(client, chip, _message(number)).status_code == 200


def test_redis_counters_expire_with_their_window(client, settings):
    settings.WEBHOOK_LIMIT_BACKEND = "redis"
    settings.REDIS_URL = REDIS_TEST_URL
    intake_limits_reset()
    chip = chip_for("sandbox")
    assert post_webhook(client, chip, _message(0)).status_code == 200
    connection = redis.Redis.from_url(REDIS_TEST_URL)
    keys = list(connection.scan_iter(f"sdr:intake:*:{chip.pk}:*"))
    assert len(keys) == 2
    assert all(0 < connection.ttl(key) <= 7200 for key in keys)
    intake_limits_reset()


def _shared_count(connection: redis.Redis, chip_id: int, window: int) -> int:
    return int(connection.get(f"sdr:intake:n:{chip_id}:{window}") or 0)


@pytest.fixture
def redis_counters():
    """Two web processes' counters on one Redis (each process has its own instance)."""
    connection = redis.Redis.from_url(REDIS_TEST_URL)
    for key in connection.scan_iter("sdr:intake:*"):
        connection.delete(key)
    yield [intake_limits._RedisCounters(REDIS_TEST_URL) for _ in range(2)], connection
    for key in connection.scan_iter("sdr:intake:*"):
        connection.delete(key)


def test_far_from_its_limits_a_process_sends_its_counts_in_batches(redis_counters):
    [counters, _], connection = redis_counters
    limits, now = (3000, 10**9), 1_000_000.0
    for number in range(100):
        assert counters.add(7, 1, 1, 100, limits=limits, now=now) == (
            number + 1,
            100 * (number + 1),
        )
    # The first delivery went to Redis; the next 99 are counted here for now.
    assert _shared_count(connection, 7, 1) == 1
    # A second later the next delivery sends them all.
    assert counters.add(7, 1, 1, 100, limits=limits, now=now + intake_limits.SYNC_SECONDS) == (
        101,
        10_100,
    )
    assert _shared_count(connection, 7, 1) == 101


def test_near_a_limit_every_delivery_is_counted_in_redis(redis_counters):
    """Two processes share a limit of 1000: it holds to within what one has not sent."""
    processes, connection = redis_counters
    limit, now = 1000, 1_000_000.0
    accepted = 0
    for number in range(1500):
        counts = processes[number % 2].add(9, 1, 1, 10, limits=(limit, 0), now=now)
        assert counts is not None
        accepted += counts[0] <= limit
    assert accepted >= limit
    assert accepted <= limit + limit * intake_limits.UNSENT_SHARE
    # Past half the limit each delivery was sent at once: nothing is left unsent.
    assert _shared_count(connection, 9, 1) == 1500


def test_a_new_minute_starts_its_count_and_keeps_the_hours_bytes(redis_counters):
    [counters, _], connection = redis_counters
    limits, now = (3000, 10**9), 1_000_000.0
    for _ in range(10):
        counters.add(5, 1, 1, 100, limits=limits, now=now)
    assert counters.add(5, 2, 1, 100, limits=limits, now=now + 0.1) == (1, 1_100)
    assert int(connection.get("sdr:intake:b:5:1")) == 1_100


def test_limits_are_off_at_zero(client, settings, backend):
    settings.WEBHOOK_RATE_LIMIT_PER_MINUTE = 0
    settings.WEBHOOK_STORAGE_BUDGET_BYTES_PER_HOUR = 0
    chip = chip_for("sandbox")
    for number in range(5):
        assert post_webhook(client, chip, _message(number)).status_code == 200


def test_default_limits_are_far_above_a_real_chips_traffic(settings):
    # A busy chip: a few deliveries per second at peak, a few MiB per hour.
    assert settings.WEBHOOK_RATE_LIMIT_PER_MINUTE >= 1000
    assert settings.WEBHOOK_STORAGE_BUDGET_BYTES_PER_HOUR >= 100 * 1024 * 1024


# --- Metric labels ---------------------------------------------------------------------------


def _series(name: str) -> list[dict[str, str]]:
    return [
        sample.labels
        for metric in REGISTRY.collect()
        if metric.name == name.removesuffix("_total")
        for sample in metric.samples
        if sample.name == name
    ]


@pytest.mark.parametrize(
    ("provider", "body", "expected_event"),
    [
        ("sandbox", {"type": "made-up-type-7f3a"}, "other"),
        (
            "sandbox",
            {"type": "message", "id": "1", "from": "+5511999990000", "text": "oi"},
            "message",
        ),
        ("evolution", {"event": "MESSAGES_UPSERT-7f3a", "data": {}}, "other"),
        ("evolution", {"event": "PRESENCE_UPDATE", "data": {}}, "presence.update"),
        ("zapi", {"type": "SomethingCallback7f3a"}, "other"),
        ("wapi", {"event": "webhook7f3a"}, "other"),
    ],
)
def test_event_labels_come_from_a_fixed_set(client, provider, body, expected_event):
    chip = chip_for(provider)
    response = post_webhook(client, chip, body)
    assert response.status_code == 200
    labels = _series("webhook_events_total")
    assert {"provider": provider, "event": expected_event, "outcome": "accepted"} in labels
    assert not [label for label in labels if "7f3a" in label["event"]]


def test_meta_batches_of_known_fields_count_as_batch(client):
    chip = chip_for("meta")
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}},
                    {"field": "account_alerts", "value": {"entity_type": "WABA"}},
                    {"field": "x-7f3a", "value": {}},
                ],
            }
        ],
    }
    assert post_webhook(client, chip, body).status_code == 200
    body["entry"][0]["changes"].pop()
    assert post_webhook(client, chip, body).status_code == 200
    labels = _series("webhook_events_total")
    assert {"provider": "meta", "event": "other", "outcome": "accepted"} in labels
    assert {"provider": "meta", "event": "batch", "outcome": "accepted"} in labels
