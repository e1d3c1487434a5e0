"""Credentials that arrive with a webhook are never stored nor shown (issue 8, finding 3)."""

from __future__ import annotations

import pytest

from channels.models import WebhookEvent
from core.redaction import REDACTED
from tests.channels.webhooks import deliver, load_fixture, load_fixture_json, post_webhook
from tests.factories.channels import ChipFactory, WebhookEventFactory

pytestmark = pytest.mark.django_db

BODY_APIKEY = "00000000-0000-4000-8000-000000000001"  # in the real Evolution fixture


@pytest.fixture
def evolution_chip():
    return ChipFactory(
        provider="evolution", instance_id="tigo1", webhook_token="evo-hook-token-123"
    )


def test_evolution_body_apikey_and_credential_headers_are_not_stored(
    client, evolution_chip, django_capture_on_commit_callbacks
):
    body = load_fixture("evolution", "messages_upsert__text_incoming_v1")
    assert load_fixture_json("evolution", "messages_upsert__text_incoming_v1")["apikey"]

    response = deliver(client, evolution_chip, body, django_capture_on_commit_callbacks)

    event = response.event
    assert event.status == WebhookEvent.Status.PROCESSED  # processing needs no credential
    assert event.payload["apikey"] == REDACTED
    assert event.payload["data"]["key"]["id"] == "3EB03E3CA617ADA52AEA79"
    assert event.headers["apikey"] != "evo-hook-token-123"
    stored = WebhookEvent.objects.filter(pk=event.pk).values("payload", "headers").get()
    assert BODY_APIKEY not in str(stored)
    assert "evo-hook-token-123" not in str(stored)


def test_a_rejected_body_keeps_no_credential_either(client, evolution_chip):
    response = post_webhook(
        client,
        evolution_chip,
        b"apikey=form-encoded-secret-999&event=messages.upsert",
        headers={"Authorization": "Bearer not-a-valid-jwt-but-a-secret"},
    )

    assert response.status_code == 400
    event = WebhookEvent.objects.get(chip=evolution_chip, status=WebhookEvent.Status.INVALID)
    assert "form-encoded-secret-999" not in event.raw_body
    assert "not-a-valid-jwt-but-a-secret" not in str(event.headers)


def test_ops_never_see_credentials_of_events_stored_before_the_fix(evolution_chip, role_client):
    event = WebhookEventFactory(chip=evolution_chip)
    # As stored by the old intake: written around the model, the way old rows are.
    WebhookEvent.objects.filter(pk=event.pk).update(
        payload={"event": "messages.upsert", "apikey": BODY_APIKEY},
        headers={"apikey": "old-header-secret-42", "user-agent": "axios"},
        raw_body="token=old-raw-secret-77",
    )
    ops = role_client("ops")

    page = ops.get(f"/admin/channels/webhookevent/{event.pk}/change/")

    assert page.status_code == 200
    html = page.content.decode()
    for secret in (BODY_APIKEY, "old-header-secret-42", "old-raw-secret-77"):
        assert secret not in html
    assert "messages.upsert" in html
    assert "axios" in html
