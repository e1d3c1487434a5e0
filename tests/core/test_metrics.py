import json
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.metrics import counter_inc, histogram_observe, metrics_flush
from core.models import MetricCounter
from tests.channels.webhooks import chip_for, load_fixture_json, post_webhook
from tests.factories.conversations import OutboundMessageFactory
from tests.factories.core import WorkerHeartbeatFactory


def metric_value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


@pytest.mark.django_db
def test_metrics_export_outbox_and_heartbeat_state(client):
    WorkerHeartbeatFactory(beat_at=timezone.now() - timedelta(seconds=42))
    OutboundMessageFactory(next_attempt_at=timezone.now() - timedelta(minutes=5))
    OutboundMessageFactory()

    response = client.get("/metrics")

    assert response.status_code == 200
    text = response.content.decode()
    assert metric_value(text, "outbox_pending_messages") == 2
    assert 300 <= metric_value(text, "outbox_oldest_pending_seconds") < 330
    assert 42 <= metric_value(text, "worker_heartbeat_age_seconds") < 60
    # django-prometheus' own series are there too.
    assert "django_http_requests_total_by_method_total" in text


@pytest.mark.django_db
def test_metrics_heartbeat_is_minus_one_before_any_beat(client):
    text = client.get("/metrics").content.decode()
    assert metric_value(text, "worker_heartbeat_age_seconds") == -1
    assert metric_value(text, "outbox_pending_messages") == 0


# --- Buffered counters (production's mode; the suite writes through) ------------------


@pytest.fixture
def buffered(settings):
    settings.METRICS_FLUSH_SECONDS = 3600
    yield
    metrics_flush()  # nothing left over for the next test


def zapi_text(message_id: str) -> dict:
    body = load_fixture_json("zapi", "received__text")
    body["messageId"] = message_id
    return body


ACCEPTED = 'webhook_events_total{event="ReceivedCallback",outcome="accepted",provider="zapi"}'


@pytest.mark.django_db
def test_a_webhook_writes_no_counter_row_and_a_scrape_still_shows_its_count(client, buffered):
    chip = chip_for("zapi")

    with CaptureQueriesContext(connection) as queries:
        assert post_webhook(client, chip, zapi_text("m1")).status_code == 200

    assert not [q for q in queries if "core_metriccounter" in q["sql"]]
    assert not MetricCounter.objects.exists()
    text = client.get("/metrics").content.decode()
    assert f"{ACCEPTED} 1.0" in text


@pytest.mark.django_db(transaction=True)
def test_a_request_writes_the_buffer_once_the_interval_has_passed(client, buffered, settings):
    chip = chip_for("zapi")
    assert post_webhook(client, chip, zapi_text("m1")).status_code == 200
    assert not MetricCounter.objects.filter(name="webhook_events_total").exists()

    settings.METRICS_FLUSH_SECONDS = 0.001
    time.sleep(0.01)
    assert post_webhook(client, chip, zapi_text("m2")).status_code == 200

    # Both deliveries, written at the end of the second request, without a scrape.
    row = MetricCounter.objects.get(name="webhook_events_total")
    assert row.value == 2
    assert json.loads(row.labels)["outcome"] == "accepted"


@pytest.mark.django_db
def test_a_flush_adds_every_pending_series_to_the_stored_totals_in_one_statement(buffered):
    counter_inc("handoffs_total", {"reason": "lead_request"})
    metrics_flush()
    counter_inc("handoffs_total", {"reason": "lead_request"}, 2)
    counter_inc("handoffs_total", {"reason": "agent_decision"})
    histogram_observe("agent_response_seconds", 1.5)

    with CaptureQueriesContext(connection) as queries:
        metrics_flush()

    assert len(queries) == 1
    stored = dict(MetricCounter.objects.values_list("labels", "value"))
    assert stored['{"reason": "lead_request"}'] == 3
    assert stored['{"reason": "agent_decision"}'] == 1
    assert stored['{"le": "2.0"}'] == 1
    assert stored['{"sum": "ms"}'] == 1500


def test_buffered_request_histograms_hold_what_histogram_observe_would():
    from prometheus_client import CollectorRegistry, Histogram

    from core.http_metrics import ViewRequestMetrics

    buckets = (0, 100, 1000, 10_000, float("inf"))
    values = [0, 1, 100, 100.5, 999, 1000, 5e6, 3, 0.25]
    registry = CollectorRegistry()
    observed = Histogram("observed", "", buckets=buckets, registry=registry)
    buffered = Histogram("buffered", "", buckets=buckets, registry=registry)
    recorder = ViewRequestMetrics()
    for value in values:
        observed.observe(value)
        recorder._observe(buffered, value)
    recorder.flush()

    def samples(name: str) -> list[tuple[str, dict, float]]:
        [metric] = [m for m in registry.collect() if m.name == name]
        return [
            (s.name.removeprefix(name), s.labels, s.value)
            for s in metric.samples
            if not s.name.endswith("_created")
        ]

    assert samples("buffered") == samples("observed")
