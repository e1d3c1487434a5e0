"""The OpenAPI schema at /api/schema/, and a schemathesis run against it finding no 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from channels.models import WebhookEvent


def test_schema_documents_the_webhook_endpoint(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    operation = schema["paths"]["/webhooks/{provider}/{chip_key}/"]["post"]
    assert set(operation["responses"]) == {"200", "400", "401", "403", "404", "413", "503"}
    assert operation["requestBody"]["content"]["application/json"]["schema"]["type"] == "object"
    get = schema["paths"]["/webhooks/{provider}/{chip_key}/"]["get"]
    assert "text/plain" in get["responses"]["200"]["content"]


@pytest.fixture
def keep_test_connection():
    """Run the WSGI app inside the test transaction, as Django's test Client does.

    Otherwise request_finished closes the connection the test's transaction lives on.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(make_chip, keep_test_connection):
    # Chips without a provider token, so generated bodies reach the parsers too.
    chips = [make_chip(provider) for provider in ("meta", "evolution", "zapi", "wapi", "sandbox")]
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 2

    for operation in operations:

        @settings(
            max_examples=60,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case):
            # As generated (random provider and key: 404), then aimed at each real chip.
            case.call_and_validate(checks=[not_a_server_error])
            for chip in chips:
                case.path_parameters = {"provider": chip.provider, "chip_key": chip.webhook_key}
                case.call_and_validate(checks=[not_a_server_error])

        run()
    assert WebhookEvent.objects.exists()
