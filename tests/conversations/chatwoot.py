"""Chatwoot webhook deliveries in tests: the real payloads, posted as Chatwoot posts them."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

from django.test import Client
from django.urls import reverse

from conversations.chatwoot_events import chatwoot_signature

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "chatwoot"
TOKEN = "chatwoot-url-token-for-tests"
SECRET = "chatwoot-webhook-secret-for-tests"


def chatwoot_payload(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((FIXTURES / f"{name}.json").read_text()))


def post_chatwoot(
    client: Client,
    payload: Any,
    *,
    delivery: str | None = None,
    secret: str | None = None,
    timestamp: int | None = None,
    token: str = TOKEN,
) -> Any:
    """POST like Chatwoot: a fresh X-Chatwoot-Delivery, signed when `secret` is given."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"X-Chatwoot-Delivery": str(uuid.uuid4()) if delivery is None else delivery}
    if secret is not None:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        headers["X-Chatwoot-Timestamp"] = stamp
        headers["X-Chatwoot-Signature"] = chatwoot_signature(
            secret=secret, timestamp=stamp, body=body
        )
    url = reverse("chatwoot-webhook", args=[token])
    return client.post(url, body, content_type="application/json", headers=headers)


def agent_message(conversation_id: int, text: str, *, message_id: int = 99523) -> dict[str, Any]:
    """Chatwoot's real `message_created` for an SDR's outgoing message, retargeted."""
    payload = chatwoot_payload("message_created_outgoing_agent")
    payload["content"] = text
    payload["id"] = message_id
    payload["conversation"]["id"] = conversation_id
    return payload


def private_note(conversation_id: int, text: str, *, message_id: int) -> dict[str, Any]:
    payload = agent_message(conversation_id, text, message_id=message_id)
    payload["private"] = True
    return payload


def labels_changed(conversation_id: int, previous: list[str], current: list[str]) -> dict:
    """Chatwoot's real `conversation_updated` with its label_list change retargeted."""
    payload = chatwoot_payload("conversation_updated_labels")
    payload["id"] = conversation_id
    payload["labels"] = current
    payload["changed_attributes"][1]["label_list"] = {
        "previous_value": previous,
        "current_value": current,
    }
    return payload
