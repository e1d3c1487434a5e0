"""The lean webhook view (issue 14): what skipping DRF and most middleware must not change.

The contract itself (status codes, bodies, dedupe, limits) is in
test_webhook_intake.py and tests/security/; these are the answers' framing,
the middleware the webhook still goes through, and the connection it reuses
without Django's per-request health check.
"""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection
from django_q.models import OrmQ
from prometheus_client import REGISTRY

from channels.models import WebhookEvent
from core.http_metrics import view_request_metrics_flush
from tests.channels.webhooks import load_fixture, load_fixture_json, post_webhook, webhook_url

ALLOW = "GET, POST, HEAD, OPTIONS"


def _responses(status: str, method: str) -> float:
    view_request_metrics_flush()  # what /metrics does before it answers
    value = REGISTRY.get_sample_value(
        "django_http_responses_total_by_status_view_method_total",
        {"status": status, "view": "webhook", "method": method},
    )
    return value or 0.0


def test_an_accepted_delivery_is_compact_json_with_the_security_headers(make_chip, client):
    chip = make_chip("zapi")
    response = post_webhook(client, chip, load_fixture("zapi", "received__text"))
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert response.content == f'{{"status":"accepted","event_id":{event.pk}}}'.encode()
    assert response["Content-Type"] == "application/json"
    assert response["Content-Length"] == str(len(response.content))
    assert response["Allow"] == ALLOW
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    # Nothing of the session, CSRF or login machinery touches a provider's request.
    assert "Set-Cookie" not in response
    assert "Cookie" not in response.get("Vary", "")


def test_an_unknown_route_under_webhooks_still_gets_the_full_stack(make_chip, client):
    chip = make_chip("zapi")
    # No trailing slash: CommonMiddleware's redirect, as before.
    response = client.post(webhook_url(chip).rstrip("/"), data=b"{}", content_type="text/plain")
    assert response.status_code == 301
    assert response["Location"] == webhook_url(chip)


def test_a_changed_urlconf_applies_to_a_webhook_url_already_served(make_chip, client, settings):
    chip = make_chip("zapi")
    url, body = webhook_url(chip), load_fixture("zapi", "received__text")
    headers = {"z-api-token": chip.webhook_token}
    assert client.post(url, body, "application/json", headers=headers).status_code == 200
    # This module's urlpatterns: nothing is served under /webhooks/ any more.
    settings.ROOT_URLCONF = __name__
    assert client.post(url, body, "application/json", headers=headers).status_code == 404
    assert WebhookEvent.objects.count() == 1


def test_the_https_redirect_still_applies_to_webhooks(make_chip, client, settings):
    settings.SECURE_SSL_REDIRECT = True
    chip = make_chip("zapi")
    response = post_webhook(client, chip, load_fixture("zapi", "received__text"))
    assert response.status_code == 301
    assert response["Location"].startswith("https://")
    assert not WebhookEvent.objects.exists()


def test_webhooks_are_counted_in_the_per_view_http_metrics(make_chip, client):
    chip = make_chip("zapi")
    accepted, refused = _responses("200", "POST"), _responses("404", "POST")
    post_webhook(client, chip, load_fixture("zapi", "received__text"))
    post_webhook(client, chip, load_fixture("zapi", "received__text"), key="not-a-chip-key")
    assert _responses("200", "POST") == accepted + 1
    assert _responses("404", "POST") == refused + 1


def test_metrics_shows_a_webhook_answered_a_moment_ago(make_chip, client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = []
    chip = make_chip("zapi")
    accepted = _responses("200", "POST")
    post_webhook(client, chip, load_fixture("zapi", "received__text"))
    # /metrics adds what its process recorded since the last flush before it answers.
    text = client.get("/metrics").content.decode()
    [line] = [
        line
        for line in text.splitlines()
        if line.startswith("django_http_responses_total_by_status_view_method_total{")
        and 'status="200"' in line
        and 'view="webhook"' in line
        and 'method="POST"' in line
    ]
    assert float(line.rsplit(" ", 1)[1]) == accepted + 1


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_other_methods_are_405_in_json_and_store_nothing(make_chip, client, method):
    chip = make_chip("zapi")
    response = getattr(client, method)(
        webhook_url(chip), data=load_fixture("zapi", "received__text")
    )
    assert response.status_code == 405
    assert response.json() == {
        "error": "method_not_allowed",
        "detail": f'Método "{method.upper()}" não é permitido.',
    }
    assert response["Allow"] == ALLOW
    assert not WebhookEvent.objects.exists()


def test_options_describes_the_endpoint(make_chip, client):
    chip = make_chip("zapi")
    response = client.options(webhook_url(chip))
    assert response.status_code == 200
    assert response.json()["parses"] == ["application/json"]
    assert response["Allow"] == ALLOW


def test_an_accept_header_is_not_negotiated(make_chip, client):
    chip = make_chip("zapi")
    response = post_webhook(
        client, chip, load_fixture("zapi", "received__text"), headers={"Accept": "text/html"}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "accepted"


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_database_dropped_between_deliveries_costs_no_delivery(make_chip, client):
    """No `SELECT 1` before each delivery: a dead connection is replaced when it fails."""
    chip = make_chip("zapi")
    first = load_fixture_json("zapi", "received__text")
    assert post_webhook(client, chip, first).status_code == 200
    # What a database restart does to every connection a web process keeps.
    pid = connection.connection.info.backend_pid
    params = connection.settings_dict
    with psycopg.connect(
        host=params["HOST"],
        port=params["PORT"] or 5432,
        user=params["USER"],
        dbname=params["NAME"],
        autocommit=True,
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    second = {**first, "messageId": "after-the-restart"}
    response = post_webhook(client, chip, second)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "accepted"
    assert connection.connection.info.backend_pid != pid
    assert WebhookEvent.objects.count() == 2
    assert WebhookEvent.objects.filter(pk=response.json()["event_id"]).exists()
    # The event and its task, once each (the ORM broker writes both in one commit).
    assert OrmQ.objects.count() == 2


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    view_request_metrics_flush()  # what /metrics does before it answers
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


# What django-prometheus' two middlewares record for one request, by series.
_REQUEST_SERIES = [
    ("django_http_requests_before_middlewares_total", {}),
    ("django_http_responses_before_middlewares_total", {}),
    ("django_http_requests_latency_including_middlewares_seconds_count", {}),
    ("django_http_requests_total_by_method_total", {"method": "POST"}),
    ("django_http_requests_total_by_transport_total", {"transport": "http"}),
    ("django_http_requests_body_total_bytes_count", {}),
    (
        "django_http_requests_total_by_view_transport_method_total",
        {"view": "webhook", "transport": "http", "method": "POST"},
    ),
    ("django_http_responses_total_by_status_total", {"status": "200"}),
    ("django_http_responses_total_by_charset_total", {"charset": "utf-8"}),
    ("django_http_responses_body_total_bytes_count", {}),
    (
        "django_http_requests_latency_seconds_by_view_method_count",
        {"view": "webhook", "method": "POST"},
    ),
]


def test_a_webhook_is_counted_in_every_request_series_the_prometheus_middlewares_keep(
    make_chip, client
):
    chip = make_chip("zapi")
    before = {name: _sample(name, labels) for name, labels in _REQUEST_SERIES}
    body_bytes = _sample("django_http_requests_body_total_bytes_sum")
    body = load_fixture("zapi", "received__text")
    response = post_webhook(client, chip, body)
    assert response.status_code == 200
    after = {name: _sample(name, labels) for name, labels in _REQUEST_SERIES}
    assert {name: after[name] - before[name] for name in after} == dict.fromkeys(after, 1.0)
    assert _sample("django_http_requests_body_total_bytes_sum") - body_bytes == len(body)


def test_a_made_up_method_adds_no_series_of_its_own(make_chip, client):
    chip = make_chip("zapi")
    latency = "django_http_requests_latency_seconds_by_view_method_count"
    invalid = {"view": "webhook", "method": "<invalid method>"}
    before = _sample(latency, invalid)
    response = client.generic("MADEUP", webhook_url(chip))
    assert response.status_code == 405
    assert _sample(latency, invalid) == before + 1
    assert _sample(latency, {"view": "webhook", "method": "MADEUP"}) == 0


urlpatterns: list = []
