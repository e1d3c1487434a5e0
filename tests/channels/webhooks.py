"""One way to deliver a webhook in tests: load a real fixture, sign it, post it, process it."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from django.test import Client
from django.urls import reverse

from channels import tasks
from channels.models import Chip, WebhookEvent
from tests.factories.channels import ChipFactory

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "payloads"


META_APP_SECRET = "meta-app-secret-for-tests"


def chip_for(provider: str, **kwargs: Any) -> Chip:
    """A chip of `provider`, with the credentials its fixtures need (Meta signs)."""
    defaults: dict[str, Any] = {}
    if provider == "meta":
        defaults = {"app_secret": META_APP_SECRET, "verify_token": "meatyhamhock"}
    return ChipFactory(provider=provider, **{**defaults, **kwargs})


def fixture_files() -> list[Path]:
    """Every webhook body kept under tests/fixtures/payloads (the GET handshake aside)."""
    return sorted(
        path for path in FIXTURES.glob("*/*.json") if not path.name.startswith("verification__")
    )


def load_fixture(provider: str, name: str) -> bytes:
    return (FIXTURES / provider / f"{name}.json").read_bytes()


def load_fixture_json(provider: str, name: str) -> dict[str, Any]:
    return json.loads(load_fixture(provider, name))


def webhook_url(chip: Chip, *, key: str | None = None, provider: str | None = None) -> str:
    return reverse(
        "webhook",
        kwargs={"provider": provider or chip.provider, "chip_key": key or chip.webhook_key},
    )


def meta_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def auth_headers(chip: Chip, body: bytes) -> dict[str, str]:
    """The credential the real provider would send for this chip."""
    if chip.provider == "meta":
        return {"X-Hub-Signature-256": meta_signature(chip.app_secret, body)}
    if not chip.webhook_token:
        return {}
    header = {
        "evolution": "apikey",
        "zapi": "z-api-token",
        "wapi": "token",
        "sandbox": "X-Sandbox-Token",
    }[chip.provider]
    return {header: chip.webhook_token}


def post_webhook(
    client: Client,
    chip: Chip,
    body: bytes | dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    sign: bool = True,
    **url_kwargs: Any,
):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    all_headers = {**(auth_headers(chip, body) if sign else {}), **(headers or {})}
    return client.post(
        webhook_url(chip, **url_kwargs),
        data=body,
        content_type="application/json",
        headers=all_headers,
    )


def deliver(client: Client, chip: Chip, body: bytes | dict[str, Any], capture) -> Any:
    """Post like the provider does, run the on-commit enqueue, then the worker's task."""
    with capture(execute=True):
        response = post_webhook(client, chip, body)
    assert response.status_code == 200, response.content
    event_id = response.json()["event_id"]
    tasks.process_webhook_event(event_id)
    response.event = WebhookEvent.objects.get(pk=event_id)
    return response
