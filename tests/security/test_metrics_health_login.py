"""Issue 8, finding 9: /metrics behind a token and/or an allow-list, admin
logins locked out after repeated failures, /health details for staff only."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.urls import reverse

from tests.factories.core import WorkerHeartbeatFactory

pytestmark = pytest.mark.django_db

TOKEN = "scrape-token-0123456789abcdef"


@override_settings(METRICS_TOKEN=TOKEN)
def test_metrics_needs_the_bearer_token(client):
    missing = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    non_ascii = client.get("/metrics", HTTP_AUTHORIZATION="Bearer tokén")
    right = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert (missing.status_code, wrong.status_code, non_ascii.status_code) == (401, 401, 401)
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"outbox_pending_messages" not in missing.content
    assert right.status_code == 200
    assert b"outbox_pending_messages" in right.content


@override_settings(METRICS_ALLOWED_IPS=["10.1.0.0/16", "192.0.2.7"])
def test_metrics_answers_only_the_allowed_addresses(client):
    def scrape(address: str, forwarded: str = "") -> int:
        extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
        return client.get("/metrics", REMOTE_ADDR=address, **extra).status_code

    assert scrape("10.1.4.2") == 200
    assert scrape("192.0.2.7") == 200
    assert scrape("192.0.2.8") == 403
    # A forged X-Forwarded-For is ignored when no proxy is trusted.
    assert scrape("203.0.113.9", forwarded="10.1.4.2") == 403
    with override_settings(TRUSTED_PROXY_COUNT=1):
        # Behind one proxy the address it saw counts, not what the client wrote before it.
        assert scrape("172.17.0.1", forwarded="203.0.113.9") == 403
        assert scrape("172.17.0.1", forwarded="10.1.4.2, 203.0.113.9") == 403
        assert scrape("172.17.0.1", forwarded="203.0.113.9, 10.1.4.2") == 200


@override_settings(METRICS_ALLOWED_IPS=["10.1.0.0/16"], METRICS_TOKEN=TOKEN)
def test_metrics_with_both_needs_both(client):
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    assert client.get("/metrics", REMOTE_ADDR="10.1.0.5").status_code == 401
    assert client.get("/metrics", REMOTE_ADDR="10.2.0.5", **bearer).status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.1.0.5", **bearer).status_code == 200


def _login(client, username: str, password: str):
    return client.post(
        reverse("admin:login"),
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR="198.51.100.20",
    )


@override_settings(AXES_FAILURE_LIMIT=3, AXES_COOLOFF_TIME=timedelta(minutes=15))
def test_admin_login_locks_out_after_repeated_failures(client, django_user_model):
    django_user_model.objects.create_user(
        username="maria", password="senha-certa-123", is_staff=True
    )

    failures = [_login(client, "maria", f"errada-{n}").status_code for n in range(3)]
    locked = _login(client, "maria", "senha-certa-123")

    assert failures[:2] == [200, 200]
    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Muitas tentativas de login sem sucesso" in page
    assert "bloqueado por 15 minutos" in page
    assert "_auth_user_id" not in client.session
    # Another address, or the right password from elsewhere, still logs in:
    # a stranger cannot lock a real operator out.
    response = client.post(
        reverse("admin:login"),
        {"username": "maria", "password": "senha-certa-123", "next": "/admin/"},
        REMOTE_ADDR="198.51.100.99",
    )
    assert response.status_code == 302
    assert client.session["_auth_user_id"]


def test_health_details_only_for_staff(client, django_user_model, settings):
    settings.Q_BROKER = "redis"
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    WorkerHeartbeatFactory()
    WorkerHeartbeatFactory(cluster=settings.Q_AGENT_CLUSTER)

    anonymous = client.get("/health")
    client.force_login(django_user_model.objects.create_user(username="curious"))
    not_staff = client.get("/health")
    client.force_login(django_user_model.objects.create_user(username="ops", is_staff=True))
    staff = client.get("/health").json()

    for response in (anonymous, not_staff):
        assert response.status_code == 200
        assert response.json() == {
            "status": "degraded",
            "checks": {
                "database": {"status": "ok"},
                "broker": {"status": "degraded"},
                "worker": {"status": "ok"},
                "agent_worker": {"status": "ok"},
                "outbox": {"status": "ok"},
            },
        }
    assert "127.0.0.1" in staff["checks"]["broker"]["error"]
    assert staff["checks"]["worker"]["heartbeat_age_seconds"] < 60


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_health_with_the_database_down_names_no_host_even_to_a_session(client, django_user_model):
    client.force_login(django_user_model.objects.create_user(username="ops", is_staff=True))
    original_port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = "1"
    try:
        with_session = client.get("/health")
        client.cookies.clear()
        anonymous = client.get("/health")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = original_port

    for response in (with_session, anonymous):
        assert response.status_code == 503
        assert response.json() == {
            "status": "down",
            "checks": {"database": {"status": "down"}, "broker": {"status": "ok"}},
        }


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@override_settings(AXES_FAILURE_LIMIT=2)
def test_a_locked_out_operator_reads_why_in_portuguese(
    live_server, page, django_user_model, tmp_path
):
    django_user_model.objects.create_user(username="ana", password="senha-certa-123", is_staff=True)

    for password in ("errada-1", "errada-2", "senha-certa-123"):
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "ana")
        page.fill("#id_password", password)
        page.click("input[type=submit]")

    page.screenshot(path=tmp_path / "lockout.png", full_page=True)
    text = page.inner_text("#content")
    assert "Muitas tentativas de login sem sucesso" in text
    assert "bloqueado por 15 minutos" in text
    assert page.inner_text("#site-name") == "SDR Ops"  # the admin's frame, not a bare error
