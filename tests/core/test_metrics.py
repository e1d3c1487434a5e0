from datetime import timedelta

import pytest
from django.utils import timezone

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
