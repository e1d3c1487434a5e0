"""Issue 8, finding 5: nothing a stranger sends answers 5xx; authentication comes before parsing.

Each of these answered 500 before the fix (and some stored nothing).
"""

from __future__ import annotations

import json

import pytest

from channels.models import WebhookEvent
from tests.channels.webhooks import chip_for, load_fixture, load_fixture_json, post_webhook

TOKEN_HEADERS = {"evolution": "apikey", "zapi": "z-api-token", "wapi": "token"}


def _deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@pytest.mark.django_db
def test_non_ascii_byte_in_the_meta_signature_is_403_and_stores_nothing(client):
    chip = chip_for("meta")
    # A WSGI server hands header bytes over as latin-1 text: "\xe9" is the byte 0xE9.
    response = post_webhook(
        client,
        chip,
        load_fixture("meta", "messages__text"),
        sign=False,
        headers={"X-Hub-Signature-256": "sha256=\xe9" + "0" * 63},
    )
    assert response.status_code == 403
    assert response.json() == {"error": "forbidden", "detail": "webhook credential does not match"}
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("provider", ["evolution", "zapi", "wapi"])
def test_deeply_nested_body_without_the_token_is_401_before_any_parsing(client, provider):
    chip = chip_for(provider, webhook_token="the-provider-token", instance_id="inst-1")
    response = post_webhook(client, chip, _deep(1000), sign=False)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"
    # A wrong token is refused the same way, whatever the body.
    response = post_webhook(
        client, chip, _deep(100_000), headers={TOKEN_HEADERS[provider]: "wrong"}
    )
    assert response.status_code == 403
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("provider", ["evolution", "zapi", "wapi"])
@pytest.mark.parametrize("levels", [480, 1000])
def test_deeply_nested_body_with_the_token_is_400_and_kept_as_invalid(client, provider, levels):
    chip = chip_for(provider, webhook_token="the-provider-token")
    body = b'{"event": "messages.upsert", "type": "ReceivedCallback", "data": ' + _deep(levels)
    body += b"}"
    response = post_webhook(client, chip, body)
    assert response.status_code == 400
    answer = response.json()
    assert answer["error"] == "invalid"
    assert "nested" in answer["detail"]
    event = WebhookEvent.objects.get(pk=answer["event_id"])
    assert event.status == WebhookEvent.Status.INVALID
    assert event.raw_body == body.decode()


@pytest.mark.django_db
def test_nesting_up_to_the_limit_is_accepted(client, settings):
    chip = chip_for("sandbox")
    settings.WEBHOOK_MAX_JSON_DEPTH = 10
    nested: object = "deep"
    for _ in range(8):  # the body object plus 8 levels: 9 containers
        nested = [nested]
    body = {"type": "note", "extra": nested}
    assert post_webhook(client, chip, body).status_code == 200
    body = {"type": "note", "extra": [[nested]]}
    assert post_webhook(client, chip, body).status_code == 400


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["messages", "statuses", "contacts"])
@pytest.mark.parametrize("value", [5, "text", {"id": "wamid.X"}, True])
def test_signed_meta_body_whose_list_is_not_a_list_is_400_and_kept(client, field, value):
    chip = chip_for("meta")
    payload = load_fixture_json(
        "meta", "statuses__sent" if field == "statuses" else "messages__text"
    )
    payload["entry"][0]["changes"][0]["value"][field] = value
    response = post_webhook(client, chip, payload)
    assert response.status_code == 400
    answer = response.json()
    assert answer["error"] == "invalid"
    assert f"`{field}` must be a list" in answer["detail"]
    event = WebhookEvent.objects.get(pk=answer["event_id"])
    assert event.status == WebhookEvent.Status.INVALID
    assert event.payload == payload


@pytest.mark.django_db
@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_numbers_json_cannot_hold_are_400_and_kept(client, literal):
    chip = chip_for("sandbox")
    body = b'{"type": "message", "id": "n1", "from": "+5511999990000", "text": "oi", '
    body += b'"timestamp": ' + literal + b"}"
    response = post_webhook(client, chip, body)
    assert response.status_code == 400
    event = WebhookEvent.objects.get(pk=response.json()["event_id"])
    assert event.status == WebhookEvent.Status.INVALID
    assert event.raw_body == body.decode()


@pytest.mark.django_db
def test_body_naming_another_instance_is_refused_after_authentication(client):
    chip = chip_for("zapi", instance_id="3C01A", webhook_token="tok")
    payload = load_fixture_json("zapi", "received__text")
    payload["instanceId"] = "someone-else"
    assert post_webhook(client, chip, payload, sign=False).status_code == 401
    response = post_webhook(client, chip, payload)
    assert response.status_code == 422
    assert not WebhookEvent.objects.exists()


# --- The sandbox admin views ----------------------------------------------------------------


@pytest.mark.parametrize("chip_id", ["abc", "1.5", "-1", "99999999999999999999999", "[1]"])
def test_sandbox_views_answer_400_on_ids_that_are_not_integers(superuser_client, chip_id):
    chip_for("sandbox")
    response = superuser_client.get(
        "/admin/sandbox/messages/", {"chip": chip_id, "phone": "+5511999990000"}
    )
    assert response.status_code == 400
    assert response.json() == {"error": "Escolha um chip sandbox."}
    for path in ("/admin/sandbox/send/", "/admin/sandbox/reset/"):
        response = superuser_client.post(
            path,
            data=json.dumps({"chip": chip_id, "phone": "+5511999990000", "text": "oi"}),
            content_type="application/json",
        )
        assert response.status_code == 400, path
        assert response.json() == {"error": "Escolha um chip sandbox."}


@pytest.mark.parametrize("profile", ["abc", {"id": 1}, "1e3"])
def test_sandbox_send_answers_400_on_a_profile_id_that_is_not_an_integer(superuser_client, profile):
    chip = chip_for("sandbox")
    response = superuser_client.post(
        "/admin/sandbox/send/",
        data=json.dumps(
            {"chip": chip.pk, "phone": "+5511999990000", "text": "oi", "profile": profile}
        ),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json() == {"error": "Perfil não encontrado."}
    assert not WebhookEvent.objects.exists()


def test_sandbox_send_keeps_a_name_with_a_nul_character(superuser_client):
    chip = chip_for("sandbox")
    response = superuser_client.post(
        "/admin/sandbox/send/",
        data=json.dumps(
            {"chip": chip.pk, "phone": "+5511999990000", "text": "oi", "name": "A\x00na"}
        ),
        content_type="application/json",
    )
    assert response.status_code == 200
    assert WebhookEvent.objects.get().payload["name"] == "Ana"
