"""No secret reaches a log line (issue 8, finding 2).

Runs what writes logs with secrets in play: webhooks with good and bad keys
and tokens, Meta's handshake, a send through every provider, Slack alerts.
Every record of every logger is captured (caplog at DEBUG on the root) along
with the formatted output of the handler our settings configure, in the text
and the JSON formats; none may contain a secret.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets as random_secrets
import subprocess
import sys

import httpx
import pytest
import respx
from django.conf import settings
from django.utils.module_loading import import_string

from channels.http import provider_client
from channels.providers.base import get_adapter
from core.alerts import alert_raise
from core.redaction import REDACTED
from tests.channels.webhooks import load_fixture, post_webhook
from tests.factories.channels import ChipFactory
from tests.support.processes import BASE_DIR, wait_for

SLACK_URL = "https://hooks.slack.com/services/T0SECRET1/B0SECRET2/slAcKs3cr3tV4lu3xyz"


def _token(label: str) -> str:
    return f"{label}-{random_secrets.token_urlsafe(16)}"


@pytest.fixture
def chips(db):
    return {
        "meta": ChipFactory(
            provider="meta",
            instance_id="106540352242922",
            api_token=_token("meta-api"),
            app_secret=_token("meta-app-secret"),
            verify_token=_token("meta-verify"),
        ),
        "evolution": ChipFactory(
            provider="evolution",
            api_base_url="https://evolution.example.com",
            instance_id="tigo1",
            api_token=_token("evo-api"),
            webhook_token=_token("evo-hook"),
        ),
        "zapi": ChipFactory(
            provider="zapi",
            instance_id="3C0FFEE",
            api_token=_token("zapi-api"),
            client_token=_token("zapi-client"),
            webhook_token=_token("zapi-hook"),
        ),
        "wapi": ChipFactory(
            provider="wapi",
            instance_id="WAPI1",
            api_token=_token("wapi-api"),
            webhook_token=_token("wapi-hook"),
        ),
        "sandbox": ChipFactory(provider="sandbox", webhook_token=_token("sandbox-hook")),
    }


def _our_handler(fmt: str, stream: io.StringIO) -> logging.Handler:
    """The console handler as settings.LOGGING declares it, writing to `stream`."""
    config = settings.LOGGING
    handler_config = config["handlers"]["console"]
    formatter_config = config["formatters"][fmt]
    if "()" in formatter_config:
        formatter = import_string(formatter_config["()"])()
    else:
        formatter = logging.Formatter(formatter_config["format"])
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    for name in handler_config.get("filters", ()):
        handler.addFilter(import_string(config["filters"][name]["()"])())
    return handler


@pytest.fixture
def our_output():
    streams = {"text": io.StringIO(), "json": io.StringIO()}
    handlers = [_our_handler(fmt, stream) for fmt, stream in streams.items()]
    root = logging.getLogger()
    for handler in handlers:
        root.addHandler(handler)
    yield streams
    for handler in handlers:
        root.removeHandler(handler)


def _webhooks(client, chips) -> None:
    meta = chips["meta"]
    post_webhook(client, meta, load_fixture("meta", "messages__text"))
    post_webhook(client, meta, load_fixture("meta", "messages__text"), sign=False)
    post_webhook(client, meta, b'{"entry": []}', headers={"X-Hub-Signature-256": "sha256=00"})
    bodies = {
        "evolution": load_fixture("evolution", "messages_upsert__text_incoming_v1"),
        "zapi": load_fixture("zapi", "received__text"),
        "sandbox": load_fixture("sandbox", "message__text"),
        "wapi": b'{"event": "webhookReceived", "instanceId": "WAPI1"}',
    }
    for provider, body in bodies.items():
        chip = chips[provider]
        post_webhook(client, chip, body)  # good key, good token
        post_webhook(client, chip, body, key=f"{chip.webhook_key[:-4]}zzzz")  # bad key
        post_webhook(client, chip, body, sign=False)  # good key, no token
        token_header = {"evolution": "apikey", "zapi": "z-api-token", "wapi": "token"}.get(
            provider, "X-Sandbox-Token"
        )
        post_webhook(client, chip, body, sign=False, headers={token_header: "wrong-" + "x" * 20})
        post_webhook(client, chip, b"{not json", headers={token_header: chip.webhook_token})


def _handshakes(client, chips) -> None:
    meta = chips["meta"]
    base = f"/webhooks/meta/{meta.webhook_key}/"
    params = {"hub.mode": "subscribe", "hub.challenge": "42"}
    good = client.get(base, {**params, "hub.verify_token": meta.verify_token})
    assert good.status_code == 200
    wrong = client.get(base, {**params, "hub.verify_token": "nope-" + "y" * 20})
    assert wrong.status_code == 403
    unknown = client.get(
        "/webhooks/meta/not-the-key-at-all-0000/", {**params, "hub.verify_token": meta.verify_token}
    )
    assert unknown.status_code == 404


def _sends(chips) -> None:
    ok = {
        "graph.facebook.com": {"messages": [{"id": "wamid.X"}]},
        "evolution.example.com": {"key": {"id": "3EB0X"}, "status": "PENDING"},
        "api.z-api.io": {"zaapId": "Z1", "messageId": "M1"},
        "api.w-api.app": {"messageId": "W1"},
    }
    with respx.mock(assert_all_called=False) as mock:
        for host, body in ok.items():
            mock.route(host=host).respond(200, json=body)
        for provider in ("meta", "evolution", "zapi", "wapi"):
            with provider_client() as client:
                result = get_adapter(provider).send_text(
                    chips[provider], to="5511999990000", text="Olá", client=client
                )
            assert result.ok, (provider, result)
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="api.z-api.io").respond(401, json={"error": "Invalid token"})
        mock.route(host="graph.facebook.com").mock(side_effect=httpx.ConnectError("refused"))
        for provider in ("zapi", "meta"):
            with provider_client() as client:
                get_adapter(provider).send_text(
                    chips[provider], to="5511999990000", text="Olá", client=client
                )


def _alerts(settings) -> None:
    settings.SLACK_WEBHOOK_URL = SLACK_URL
    with respx.mock as mock:
        route = mock.post(SLACK_URL)
        route.side_effect = [
            httpx.Response(200, text="ok"),
            httpx.Response(500, text="no"),
            httpx.ConnectError(f"cannot reach {SLACK_URL}"),
        ]
        assert alert_raise(title="Chip restrito", text="chip 1") is True
        assert alert_raise(title="Chip restrito", text="chip 2") is False
        assert alert_raise(title="Chip restrito", text="chip 3") is False


def _secrets_of(chips) -> list[str]:
    values = [SLACK_URL, SLACK_URL.split("/services/")[1]]
    for chip in chips.values():
        values += [chip.webhook_key, chip.webhook_key[:-4]]
        values += [
            value
            for value in (
                chip.api_token,
                chip.client_token,
                chip.app_secret,
                chip.verify_token,
                chip.webhook_token,
            )
            if value
        ]
    return values


@pytest.mark.django_db
def test_no_secret_reaches_any_log_line(client, chips, caplog, our_output, settings):
    caplog.set_level(logging.DEBUG)

    _webhooks(client, chips)
    _handshakes(client, chips)
    _sends(chips)
    _alerts(settings)

    lines = [record.getMessage() for record in caplog.records]
    lines += [caplog.text, our_output["text"].getvalue(), our_output["json"].getvalue()]
    captured = "\n".join(lines)
    leaked = [secret for secret in _secrets_of(chips) if secret in captured]
    assert leaked == [], f"secrets in the logs: {leaked}"

    # The lines were written, and redacted rather than dropped.
    assert f"/webhooks/evolution/{REDACTED}/" in our_output["text"].getvalue()
    assert "hub.verify_token=" + REDACTED in captured
    assert "ALERT Chip restrito" in our_output["text"].getvalue()
    json_lines = [json.loads(line) for line in our_output["json"].getvalue().splitlines()]
    assert any(entry["logger"] == "django.request" for entry in json_lines)


def test_third_party_loggers_that_print_urls_stay_quiet():
    """httpx logs every request line, Z-API token and Slack URL included, at INFO."""
    for name in ("httpx", "httpcore"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING


@pytest.mark.slow
def test_gunicorn_access_log_redacts_chip_keys_and_query_tokens(tmp_path):
    """The production web server, started as the Dockerfile starts it, logs no key.

    An unknown provider answers 404 before any database query: what is logged
    is the request line, whatever the answer.
    """
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "gunicorn.log"
    key = "k3y-" + random_secrets.token_urlsafe(24)
    token = "v3rify-" + random_secrets.token_urlsafe(16)
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn"),
                *("--config", "gunicorn.conf.py", "--bind", "127.0.0.1:0", "--workers", "1"),
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        listening = wait_for(
            lambda: re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", log.read_text()),
            timeout=30,
            what="gunicorn to listen",
        )
        base = listening.group(1)
        wait_for(lambda: "Booting worker" in log.read_text(), timeout=30, what="a worker")
        for path in (
            f"/webhooks/nosuchprovider/{key}/",
            f"/webhooks/nosuchprovider/{key}/?hub.mode=subscribe&hub.verify_token={token}",
        ):
            # The worker imports Django on its first request: slow on a busy machine.
            with httpx.Client(base_url=base, timeout=60) as http:
                assert http.get(path).status_code == 404
        wait_for(lambda: log.read_text().count('" 404 ') >= 2, timeout=10, what="access lines")
    finally:
        process.terminate()
        process.wait(timeout=30)
    output = log.read_text()
    assert key not in output, output
    assert token not in output, output
    assert f"/webhooks/nosuchprovider/{REDACTED}/" in output
    assert f"hub.verify_token={REDACTED}" in output
