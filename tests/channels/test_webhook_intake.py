"""The webhook endpoint's refusals and edges: auth, bad bodies, size, database down."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time

import pytest
from django.db import connections
from prometheus_client import REGISTRY

from channels.models import WebhookEvent
from conversations.models import Message
from tests.channels.webhooks import (
    deliver,
    load_fixture,
    load_fixture_json,
    meta_signature,
    post_webhook,
    webhook_url,
)


def _jwt(key: str, *, exp_in: int = 600, alg: str = "HS256") -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    claims = b64(
        json.dumps(
            {"iat": now, "exp": now + exp_in, "app": "evolution", "action": "webhook"}
        ).encode()
    )
    signature = hmac.new(key.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64(signature)}"


# --- Authentication: refused, and nothing stored ------------------------------------------------


def test_meta_wrong_signature_is_403_and_stores_nothing(make_chip, client):
    chip = make_chip("meta")
    body = load_fixture("meta", "messages__text")
    response = post_webhook(
        client,
        chip,
        body,
        sign=False,
        headers={"X-Hub-Signature-256": meta_signature("nope", body)},
    )
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert not WebhookEvent.objects.exists()


def test_meta_missing_signature_is_401_and_stores_nothing(make_chip, client):
    chip = make_chip("meta")
    response = post_webhook(client, chip, load_fixture("meta", "messages__text"), sign=False)
    assert response.status_code == 401
    assert not WebhookEvent.objects.exists()


def test_meta_signature_over_other_bytes_is_refused(make_chip, client):
    """The HMAC covers the raw body: re-serialised JSON with the same content does not pass."""
    chip = make_chip("meta")
    body = load_fixture("meta", "messages__text")
    reserialised = json.dumps(json.loads(body)).encode()
    response = post_webhook(
        client,
        chip,
        reserialised,
        sign=False,
        headers={"X-Hub-Signature-256": meta_signature(chip.app_secret, body)},
    )
    assert response.status_code == 403


def test_meta_chip_without_app_secret_refuses_everything(make_chip, client):
    chip = make_chip("meta", app_secret="")
    body = load_fixture("meta", "messages__text")
    response = post_webhook(
        client, chip, body, sign=False, headers={"X-Hub-Signature-256": meta_signature("", body)}
    )
    assert response.status_code == 403
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize(
    ("provider", "header", "fixture"),
    [
        ("zapi", "z-api-token", "received__text"),
        ("evolution", "apikey", "messages_upsert__text_incoming_v1"),
        ("sandbox", "X-Sandbox-Token", "message__text"),
    ],
)
def test_configured_provider_token_is_required(make_chip, client, provider, header, fixture):
    chip = make_chip(provider, webhook_token="00112233445566778899AABB")
    body = load_fixture(provider, fixture)

    missing = post_webhook(client, chip, body, sign=False)
    wrong = post_webhook(
        client, chip, body, sign=False, headers={header: "00112233445566778899AABC"}
    )
    right = post_webhook(client, chip, body)

    assert missing.status_code == 401
    assert wrong.status_code == 403
    assert right.status_code == 200
    assert WebhookEvent.objects.count() == 1


def test_evolution_jwt_from_jwt_key_is_accepted_and_an_expired_one_refused(make_chip, client):
    chip = make_chip("evolution", webhook_token="jwt-shared-key")
    body = load_fixture("evolution", "messages_upsert__text_incoming_v1")

    good = post_webhook(
        client,
        chip,
        body,
        sign=False,
        headers={"Authorization": f"Bearer {_jwt('jwt-shared-key')}"},
    )
    expired = post_webhook(
        client,
        chip,
        body,
        sign=False,
        headers={"Authorization": f"Bearer {_jwt('jwt-shared-key', exp_in=-3600)}"},
    )
    forged = post_webhook(
        client, chip, body, sign=False, headers={"Authorization": f"Bearer {_jwt('other-key')}"}
    )
    assert good.status_code == 200
    assert expired.status_code == 403
    assert forged.status_code == 403


def test_body_instance_must_match_the_chip(make_chip, client):
    chip = make_chip("zapi", instance_id="0123456789ABCDEF0123456789ABCDEF")
    other_instance = load_fixture("zapi", "received__text")  # instanceId A20DA9C0…
    response = post_webhook(client, chip, other_instance)
    assert response.status_code == 422
    assert response.json()["error"] == "wrong_instance"
    assert not WebhookEvent.objects.exists()
    same_instance = post_webhook(
        client, chip, load_fixture("zapi", "received__text_fromme_captured")
    )
    assert same_instance.status_code == 200


@pytest.mark.parametrize("token", ["", "evo-apikey"])
def test_an_evolution_body_for_another_instance_says_so_not_that_the_credential_is_wrong(
    make_chip, client, token, caplog
):
    chip = make_chip("evolution", instance_id="vendas-1", webhook_token=token)
    body = load_fixture_json("evolution", "messages_upsert__text_incoming_v1")
    body["instance"] = "suporte-2"
    response = post_webhook(client, chip, body)  # with the right apikey when there is one
    assert response.status_code == 422
    answer = response.json()
    assert answer["error"] == "wrong_instance"
    assert "'suporte-2'" in answer["detail"]
    assert "not this chip's instance" in answer["detail"]
    assert "credential" not in answer["detail"]
    assert not WebhookEvent.objects.exists()
    assert not Message.objects.exists()
    assert "'suporte-2'" in caplog.text

    body["instance"] = "vendas-1"
    assert post_webhook(client, chip, body).status_code == 200


# --- Unknown chip or provider


def test_unknown_chip_key_is_404(make_chip, client):
    chip = make_chip("zapi")
    response = post_webhook(client, chip, load_fixture("zapi", "received__text"), key="not-a-key")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert not WebhookEvent.objects.exists()


def test_chip_key_of_another_provider_is_404(make_chip, client):
    chip = make_chip("zapi")
    response = post_webhook(
        client, chip, load_fixture("zapi", "received__text"), provider="evolution"
    )
    assert response.status_code == 404


def test_unknown_provider_is_404(make_chip, client):
    chip = make_chip("zapi")
    response = post_webhook(client, chip, {"a": 1}, provider="telegram")
    assert response.status_code == 404


# --- Bad bodies: 400, kept as invalid


def test_malformed_json_is_400_and_kept_as_invalid(make_chip, client):
    chip = make_chip("evolution")
    response = post_webhook(client, chip, b'{"event": "messages.upsert", ')
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.INVALID
    assert event.raw_body == '{"event": "messages.upsert", '
    assert "not JSON" in event.error


def test_meta_signed_garbage_is_400_not_500(make_chip, client):
    chip = make_chip("meta")
    response = post_webhook(client, chip, b"\xff\xfe not utf-8")
    assert response.status_code == 400
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.INVALID


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("meta", {"hello": "world"}),
        ("meta", [1, 2, 3]),
        ("evolution", {"event": "messages.upsert", "data": {"key": {}}}),
        ("zapi", {"type": "ReceivedCallback", "phone": "5511999990000"}),
        ("sandbox", {"type": "message", "id": "x"}),
    ],
)
def test_unknown_shape_is_400_with_json_error_and_invalid_event(make_chip, client, provider, body):
    chip = make_chip(provider)
    response = post_webhook(client, chip, body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["error"] == "invalid"
    event = WebhookEvent.objects.get(pk=payload["event_id"])
    assert event.status == WebhookEvent.Status.INVALID
    assert event.error
    assert not Message.objects.exists()


def test_unhandled_event_type_is_200_and_stored_as_ignored(
    make_chip, client, django_capture_on_commit_callbacks
):
    chip = make_chip("evolution")
    body = {"event": "presence.update", "instance": "x", "data": {"id": "5511@s.whatsapp.net"}}
    response = deliver(client, chip, body, django_capture_on_commit_callbacks)
    assert response.event.status == WebhookEvent.Status.IGNORED
    assert response.event.event_type == "presence.update"
    assert "unhandled event" in response.event.error


# --- Size


def test_body_over_one_mebibyte_is_413_and_stores_nothing(make_chip, client):
    chip = make_chip("sandbox")
    big = json.dumps(
        {"type": "message", "id": "big", "from": "+5511999990000", "text": "x" * (1024 * 1024)}
    )
    response = post_webhook(client, chip, big.encode())
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert not WebhookEvent.objects.exists()


def test_body_beyond_djangos_own_upload_limit_is_still_a_clean_413(make_chip, client):
    chip = make_chip("meta")
    body = b"{" + b" " * (3 * 1024 * 1024) + b"}"
    response = post_webhook(client, chip, body)
    assert response.status_code == 413


def test_body_of_exactly_the_limit_is_read(make_chip, client, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 200
    chip = make_chip("sandbox")
    body = json.dumps(
        {"type": "message", "id": "m1", "from": "+5511999990000", "text": ""}
    ).encode()
    body = body[:-1] + b" " * (200 - len(body)) + b"}"
    assert len(body) == 200
    assert post_webhook(client, chip, body).status_code == 200
    assert post_webhook(client, chip, body + b" ").status_code == 413


# --- Database unavailable: 503 so the provider retries


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_database_unavailable_is_503_with_retry_after(make_chip, client):
    chip = make_chip("zapi")
    url = webhook_url(chip)
    body = load_fixture("zapi", "received__text")
    connection = connections["default"]
    original = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["HOST"] = "127.0.0.1"
    connection.settings_dict["PORT"] = _closed_port()
    try:
        response = client.post(url, data=body, content_type="application/json")
    finally:
        connection.close()
        connection.settings_dict.update(original)
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert response["Retry-After"]
    assert not WebhookEvent.objects.exists()
    # Back up: the provider's retry goes through.
    assert client.post(url, data=body, content_type="application/json").status_code == 200


# --- Meta's GET handshake


def test_meta_verification_handshake_echoes_the_challenge(make_chip, client):
    request = load_fixture_json("meta", "verification__request")
    chip = make_chip("meta", verify_token=request["query"]["hub.verify_token"])
    response = client.get(webhook_url(chip), request["query"])
    assert response.status_code == request["expected_response"]["status"]
    assert response.content.decode() == request["expected_response"]["body"]


def test_meta_verification_with_wrong_token_is_403(make_chip, client):
    request = load_fixture_json("meta", "verification__request")
    chip = make_chip("meta", verify_token="something-else")
    response = client.get(webhook_url(chip), request["query"])
    assert response.status_code == 403


def test_get_on_a_provider_without_handshake_is_404(make_chip, client):
    chip = make_chip("zapi")
    assert client.get(webhook_url(chip)).status_code == 404


# --- Metric


def test_webhook_events_total_counts_intake_and_processing(
    make_chip, client, django_capture_on_commit_callbacks
):
    def value(outcome: str, event: str = "ReceivedCallback") -> float:
        labels = {"provider": "zapi", "event": event, "outcome": outcome}
        return REGISTRY.get_sample_value("webhook_events_total", labels) or 0.0

    chip = make_chip("zapi")
    before = {name: value(name) for name in ("accepted", "duplicate", "processed")}
    body = load_fixture("zapi", "received__text")
    deliver(client, chip, body, django_capture_on_commit_callbacks)
    post_webhook(client, chip, body)
    assert value("accepted") == before["accepted"] + 1
    assert value("duplicate") == before["duplicate"] + 1
    assert value("processed") == before["processed"] + 1
    metrics = client.get("/metrics").content.decode()
    assert (
        'webhook_events_total{event="ReceivedCallback",outcome="accepted",provider="zapi"}'
        in metrics
    )


def test_nul_characters_and_lone_surrogates_are_stored_not_a_5xx(make_chip, client):
    """Found by schemathesis: jsonb refuses \\u0000 and lone surrogates."""
    chip = make_chip("sandbox")
    body = b'{"type": "message", "id": "n1", "from": "+5511999990000", "text": "a\\u0000b\\udc7b"}'
    response = post_webhook(client, chip, body)
    assert response.status_code == 200
    assert WebhookEvent.objects.get().payload["text"] == "ab?"


@pytest.mark.parametrize(
    ("body", "text"),
    [
        # A surrogate's own UTF-8 bytes (json decodes bytes with "surrogatepass").
        (
            b'{"type": "message", "id": "n1", "from": "+5511999990000", "text": "a\xed\xb1\xbbb"}',
            "a?b",
        ),
        # Each escape on its own, next to escaped accents (which are storable).
        (
            b'{"type": "message", "id": "n1", "from": "+5511999990000", "text": "\\u00e9\\u0000"}',
            "\u00e9",
        ),
        (
            b'{"type": "message", "id": "n1", "from": "+5511999990000", "text": "\\u00e9\\uDC7B"}',
            "\u00e9?",
        ),
        (
            b'{"type": "message", "id": "n1", "from": "+5511999990000", "text": "\\u00e9\\ud83d"}',
            "\u00e9?",
        ),
        # UTF-16, which json reads too, with an escape in it.
        (
            '{"type": "message", "id": "n1", "from": "+5511999990000", "text": "a\\u0000b"}'.encode(
                "utf-16"
            ),
            "ab",
        ),
    ],
    ids=[
        "raw-surrogate",
        "nul-escape",
        "upper-surrogate-escape",
        "lower-surrogate-escape",
        "utf-16",
    ],
)
def test_unstorable_characters_outside_escapes_are_cleaned_too(make_chip, client, body, text):
    chip = make_chip("sandbox")
    response = post_webhook(client, chip, body)
    assert response.status_code == 200, response.content
    assert WebhookEvent.objects.get().payload["text"] == text


# --- Same message, another delivery ---------------------------------------------------------------


def test_meta_batch_with_two_messages_and_a_status_is_one_event_and_each_item_once(
    make_chip, client, django_capture_on_commit_callbacks
):
    """Meta batches updates; built from the real text and status fixtures."""
    chip = make_chip("meta")
    batch = load_fixture_json("meta", "messages__text")
    value = batch["entry"][0]["changes"][0]["value"]
    second = {**value["messages"][0], "id": "wamid.SECOND", "text": {"body": "E em azul?"}}
    value["messages"].append(second)
    value["statuses"] = load_fixture_json("meta", "statuses__sent")["entry"][0]["changes"][0][
        "value"
    ]["statuses"]
    response = deliver(client, chip, batch, django_capture_on_commit_callbacks)
    assert response.event.dedupe_key.startswith("sha256:")
    assert response.event.status == WebhookEvent.Status.PROCESSED
    assert "no outbound message wamid.xyzxyz" in response.event.error
    assert sorted(Message.objects.values_list("body", flat=True)) == [
        "Does it come in another color?",
        "E em azul?",
    ]

    # Meta later re-sends one of them alone: a new delivery, the same message.
    single = load_fixture_json("meta", "messages__text")
    single["entry"][0]["changes"][0]["value"]["messages"] = [second]
    again = deliver(client, chip, single, django_capture_on_commit_callbacks)
    assert again.event.pk != response.event.pk
    assert Message.objects.count() == 2


def test_evolution_resend_with_a_new_envelope_is_a_duplicate(make_chip, client):
    chip = make_chip("evolution")
    body = load_fixture_json("evolution", "messages_upsert__text_incoming_v1")
    first = post_webhook(client, chip, body)
    body["date_time"] = "2025-05-01T17:52:14.031Z"
    second = post_webhook(client, chip, body)
    assert second.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
