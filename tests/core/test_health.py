from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tests.factories.conversations import OutboundMessageFactory
from tests.factories.core import StaffUserFactory, WorkerHeartbeatFactory


@pytest.fixture
def staff_client(client, db):
    # The details are for staff; anonymous callers get statuses only
    # (tests/security/test_metrics_health_login.py).
    client.force_login(StaffUserFactory())
    return client


@pytest.mark.django_db
def test_health_ok_with_fresh_heartbeat_and_empty_outbox(staff_client, settings):
    WorkerHeartbeatFactory(beat_at=timezone.now() - timedelta(seconds=5))
    WorkerHeartbeatFactory(cluster=settings.Q_AGENT_CLUSTER)

    response = staff_client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "worker", "agent_worker", "outbox"}
    assert body["checks"]["worker"]["heartbeat_age_seconds"] < 60
    assert body["checks"]["outbox"] == {
        "status": "ok",
        "pending_messages": 0,
        "oldest_pending_seconds": None,
    }


@pytest.mark.django_db
def test_health_degraded_without_any_heartbeat(staff_client):
    response = staff_client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["worker"]["error"] == "no heartbeat"


@pytest.mark.django_db
def test_health_degraded_with_stale_heartbeat(staff_client, settings):
    settings.HEARTBEAT_STALE_SECONDS = 120
    WorkerHeartbeatFactory(beat_at=timezone.now() - timedelta(minutes=10))

    body = staff_client.get("/health").json()

    assert body["status"] == "degraded"
    assert body["checks"]["worker"]["status"] == "degraded"
    assert body["checks"]["worker"]["heartbeat_age_seconds"] >= 600


@pytest.mark.django_db
def test_health_reports_outbox_backlog(staff_client, settings):
    settings.OUTBOX_BACKLOG_WARN_SECONDS = 15 * 60
    WorkerHeartbeatFactory()
    now = timezone.now()
    OutboundMessageFactory(next_attempt_at=now - timedelta(minutes=40))
    OutboundMessageFactory(next_attempt_at=now)
    # Scheduled for later: pending, but not late.
    OutboundMessageFactory(next_attempt_at=now + timedelta(hours=2))

    body = staff_client.get("/health").json()

    outbox = body["checks"]["outbox"]
    assert outbox["pending_messages"] == 3
    assert 40 * 60 <= outbox["oldest_pending_seconds"] < 41 * 60
    assert outbox["status"] == "degraded"
    assert body["status"] == "degraded"


@pytest.mark.django_db
def test_health_broker_check_reaches_redis(staff_client, settings):
    settings.Q_BROKER = "redis"
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    WorkerHeartbeatFactory()

    assert staff_client.get("/health").json()["checks"]["broker"] == {
        "status": "ok",
        "broker": "redis",
    }

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    body = staff_client.get("/health").json()
    assert body["checks"]["broker"]["status"] == "degraded"
    assert body["status"] == "degraded"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_health_is_503_when_the_database_is_unreachable(client):
    # A real unreachable server: the connection is pointed at a closed port.
    original_port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = "1"
    try:
        response = client.get("/health")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = original_port

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    # The error names the host: it goes to the log, not to anonymous callers.
    assert body["checks"]["database"] == {"status": "down"}
    # And it recovers once the database is back.
    WorkerHeartbeatFactory()
    assert client.get("/health").status_code == 200


@pytest.mark.django_db
def test_health_only_answers_get(client):
    assert client.post("/health").status_code == 405


@pytest.mark.django_db
def test_health_degraded_when_only_the_agent_cluster_is_down(staff_client, settings):
    WorkerHeartbeatFactory()
    WorkerHeartbeatFactory(
        cluster=settings.Q_AGENT_CLUSTER, beat_at=timezone.now() - timedelta(minutes=10)
    )

    body = staff_client.get("/health").json()

    assert body["status"] == "degraded"
    assert body["checks"]["worker"]["status"] == "ok"
    assert body["checks"]["agent_worker"]["status"] == "degraded"
    assert body["checks"]["agent_worker"]["heartbeat_age_seconds"] >= 600
