"""The webhook API against a real gunicorn (the production server and its config file).

One gunicorn process on an ephemeral port serves the test database. A real
chunked request is read and stored (finding 9: it was stored empty), and a
schemathesis run over the OpenAPI schema (bodies, path parameters and the
providers' credential headers generated from it) finds no 5xx, as
generated and aimed at a real chip of every provider.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from channels.models import WebhookEvent
from tests.channels.webhooks import chip_for, load_fixture, webhook_url
from tests.support import processes
from tests.support.processes import BASE_DIR, stop_process_group, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def gunicorn() -> Iterator[str]:
    """gunicorn with the repo's gunicorn.conf.py on a socket we bound to port 0."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    with processes.process_log("gunicorn") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                "gunicorn.conf.py",
                "--bind",
                f"fd://{listener.fileno()}",
                "--workers",
                "1",
                "--threads",
                "4",
            ],
            cwd=BASE_DIR,
            env=processes.platform_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=[listener.fileno()],
            start_new_session=True,
        )
        try:
            wait_for(lambda: _answers(base_url), timeout=30, what="gunicorn to answer")
            yield base_url
        finally:
            stop_process_group(process)
            listener.close()


def _answers(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/api/schema/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_chunked_body_through_gunicorn_is_read_and_stored(gunicorn):
    chip = chip_for("zapi")
    body = load_fixture("zapi", "received__text")

    def chunks() -> Iterator[bytes]:
        # An iterator has no length: httpx sends it with Transfer-Encoding: chunked.
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    response = httpx.post(
        gunicorn + webhook_url(chip),
        content=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    event = WebhookEvent.objects.get(pk=response.json()["event_id"])
    assert event.payload == json.loads(body)
    assert event.status != WebhookEvent.Status.INVALID


def test_a_chunked_body_over_the_cap_through_gunicorn_is_413(gunicorn):
    chip = chip_for("sandbox")

    def chunks() -> Iterator[bytes]:
        yield b'{"type": "message", "text": "'
        for _ in range(1100):  # 1.1 MB, over the 1 MiB cap
            yield b"x" * 1000
        yield b'"}'

    response = httpx.post(
        gunicorn + webhook_url(chip),
        content=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert not WebhookEvent.objects.exists()


def test_schemathesis_finds_no_server_error(gunicorn):
    # Chips without a provider token, so generated bodies reach the parsers
    # too, and one with a token per provider that has one.
    chips = [chip_for(provider) for provider in ("meta", "evolution", "zapi", "wapi", "sandbox")]
    chips += [
        chip_for(provider, webhook_token="t0ken", instance_id="inst-1")
        for provider in ("evolution", "wapi")
    ]
    schema = schemathesis.openapi.from_url(f"{gunicorn}/api/schema/?format=json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {operation.method.upper() for operation in operations} == {"GET", "POST"}
    statuses: set[int] = set()

    for operation in operations:
        # Each example makes eight requests: a third of the profile's examples keeps it bounded.
        @settings(
            max_examples=max(settings.default.max_examples // 3, 1),
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case) -> None:
            # As generated (a random provider and key: 404), then aimed at each real chip.
            response = case.call_and_validate(base_url=gunicorn, checks=[not_a_server_error])
            statuses.add(response.status_code)
            for chip in chips:
                case.path_parameters = {"provider": chip.provider, "chip_key": chip.webhook_key}
                response = case.call_and_validate(base_url=gunicorn, checks=[not_a_server_error])
                statuses.add(response.status_code)

        run()
    assert max(statuses) < 500
    # The run reached past authentication: generated bodies were stored or refused as invalid.
    assert WebhookEvent.objects.exists()
    assert {200, 400, 404} <= statuses
