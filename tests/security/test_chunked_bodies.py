"""Issue 8, finding 9: chunked request bodies are read up to the cap (they were stored empty).

gunicorn decodes `Transfer-Encoding: chunked` and hands the view a stream that
ends with the body, with no Content-Length and `wsgi.input_terminated` set;
the environ below is that one. tests/security/test_live_server.py sends a real
chunked request through gunicorn.
"""

from __future__ import annotations

import io
import json

import pytest

from channels.models import WebhookEvent
from tests.channels.webhooks import chip_for, load_fixture, webhook_url

pytestmark = pytest.mark.django_db


def _post_chunked(client, chip, body: bytes, *, terminated: bool = True):
    environ = {
        "CONTENT_LENGTH": "",
        "CONTENT_TYPE": "application/json",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": io.BytesIO(body),
    }
    if terminated:
        environ["wsgi.input_terminated"] = True
    return client.generic("POST", webhook_url(chip), **environ)


def test_a_chunked_body_is_read_and_stored(client):
    chip = chip_for("zapi")
    body = load_fixture("zapi", "received__text")
    response = _post_chunked(client, chip, body)
    assert response.status_code == 200, response.content
    event = WebhookEvent.objects.get(pk=response.json()["event_id"])
    assert event.status == WebhookEvent.Status.RECEIVED
    assert event.payload == json.loads(body)


def test_a_chunked_body_over_the_cap_is_413_and_stores_nothing(client, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1024
    chip = chip_for("sandbox")
    body = json.dumps({"type": "message", "text": "x" * 1024}).encode()
    response = _post_chunked(client, chip, body)
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert not WebhookEvent.objects.exists()


def test_a_chunked_body_of_exactly_the_cap_is_read(client, settings):
    chip = chip_for("sandbox")
    body = json.dumps({"type": "note", "pad": ""}).encode()
    body = body.replace(b'""', b'"' + b"p" * (2048 - len(body)) + b'"')
    assert len(body) == 2048
    settings.WEBHOOK_MAX_BODY_BYTES = 2048
    assert _post_chunked(client, chip, body).status_code == 200


def test_chunked_on_a_server_that_cannot_end_the_stream_is_411(client):
    chip = chip_for("sandbox")
    response = _post_chunked(client, chip, b'{"type": "note"}', terminated=False)
    assert response.status_code == 411
    assert response.json()["error"] == "length_required"
    assert not WebhookEvent.objects.exists()
