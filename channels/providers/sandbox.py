"""The sandbox provider: our own wire format, for running without a phone.

The sandbox chat page and tests post JSON shaped as we define it here:

    {"type": "message", "id": "sbx-1", "from": "+5511999990000", "name": "Ana",
     "text": "oi", "from_me": false, "timestamp": 1700000000}
    {"type": "status", "id": "sbx-out-1", "status": "delivered"}
    {"type": "connection", "status": "connected", "timestamp": 1700000000}

The URL's per-chip secret is the credential; where the chip has
`webhook_token`, the `X-Sandbox-Token` header must match it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from channels import http as provider_http
from channels.providers._common import (
    as_str,
    epoch_to_datetime,
    header,
    id_or_empty,
    payload_digest,
    phone_or_none,
    require_list,
    require_object,
    same_secret,
)
from channels.providers.base import (
    ConnectionUpdate,
    ErrorKind,
    Ignored,
    InboundEvent,
    InboundMessage,
    OutboundMedia,
    PayloadError,
    ProviderAdapter,
    SendResult,
    StatusUpdate,
    register,
)

if TYPE_CHECKING:
    import httpx

    from channels.models import Chip

_STATUSES = {"sent", "delivered", "read", "failed"}
_CONNECTION = {"pending", "connected", "disconnected", "restricted", "banned"}


@register
class SandboxAdapter(ProviderAdapter):
    name = "sandbox"
    credential_headers = ("X-Sandbox-Token",)
    known_events = frozenset({"message", "status", "connection"})

    def send_text(self, chip: Chip, *, to: str, text: str, client: httpx.Client) -> SendResult:
        return _sandbox_send_text(chip, to=to, text=text, client=client)

    def send_media(
        self, chip: Chip, *, to: str, media: OutboundMedia, client: httpx.Client
    ) -> SendResult:
        return _sandbox_send_media(chip, to=to, media=media, client=client)

    def verify(self, chip: Chip, headers: Mapping[str, str], body: bytes) -> bool:
        if not chip.webhook_token:
            return True
        return same_secret(header(headers, "X-Sandbox-Token"), chip.webhook_token)

    def event_type(self, payload: Any) -> str:
        if isinstance(payload, Mapping):
            return as_str(payload.get("type"))[:100]
        return ""

    def dedupe_key(self, payload: Any, headers: Mapping[str, str]) -> str:
        if not isinstance(payload, Mapping):
            return ""
        if not payload.get("id"):
            # Identical bodies are one delivery; send a `timestamp` to tell repeats apart.
            return payload_digest(payload)
        kind = self.event_type(payload)
        suffix = f":{as_str(payload.get('status'))}" if kind == "status" else ""
        return f"{kind}:{as_str(payload['id'])}{suffix}"[:255]

    def parse_inbound(self, payload: Any, headers: Mapping[str, str]) -> list[InboundEvent]:
        payload = require_object(payload)
        kind = self.event_type(payload)
        if kind == "message":
            message_id = id_or_empty(payload.get("id"), "`id`")
            sender = id_or_empty(payload.get("from"), "`from`")
            if not message_id or not sender or not isinstance(payload.get("text"), str):
                raise PayloadError("message needs `id`, `from` and `text`")
            alt_ids = [
                id_or_empty(alt, "`alt_ids` item") for alt in require_list(payload, "alt_ids", kind)
            ]
            if payload.get("group"):
                return [Ignored(reason="group message", event_type=kind)]
            return [
                InboundMessage(
                    provider_message_id=message_id,
                    sender_id=sender,
                    phone=phone_or_none(sender),
                    kind="text",
                    text=payload["text"],
                    sender_name=as_str(payload.get("name")),
                    from_me=bool(payload.get("from_me")),
                    timestamp=epoch_to_datetime(payload.get("timestamp")),
                    alt_sender_ids=tuple(a for a in alt_ids if a),
                )
            ]
        if kind == "status":
            message_id = id_or_empty(payload.get("id"), "`id`")
            status = payload.get("status")
            if not message_id or not isinstance(status, str) or status not in _STATUSES:
                raise PayloadError(f"status needs `id` and `status` in {sorted(_STATUSES)}")
            return [
                StatusUpdate(
                    provider_message_id=message_id,
                    status=status,
                    timestamp=epoch_to_datetime(payload.get("timestamp")),
                    error=as_str(payload.get("error")),
                )
            ]
        if kind == "connection":
            status = payload.get("status")
            if not isinstance(status, str) or status not in _CONNECTION:
                raise PayloadError(f"connection needs `status` in {sorted(_CONNECTION)}")
            return [ConnectionUpdate(status=status, qr_code=as_str(payload.get("qr")))]
        if not kind:
            raise PayloadError("sandbox events need a `type`")
        return [Ignored(reason="unhandled event", event_type=kind)]


# --- Sending -------------------------------------------------------------------------------
# The sandbox has no provider: the outbound Message row is what the simulator
# page shows. With chip.api_base_url set, the message is also POSTed to
# `{api_base_url}/messages` (a simulator or a test's fake server) and that
# answer is classified like any provider's.


def _sandbox_send_text(chip: Chip, *, to: str, text: str, client: httpx.Client) -> SendResult:
    return _sandbox_post(chip, {"to": to, "text": text}, client=client)


def _sandbox_send_media(
    chip: Chip, *, to: str, media: OutboundMedia, client: httpx.Client
) -> SendResult:
    body = {"to": to, "kind": media.kind, "url": media.url, "caption": media.caption}
    return _sandbox_post(chip, body, client=client)


def _sandbox_post(chip: Chip, body: dict[str, Any], *, client: httpx.Client) -> SendResult:
    if not chip.api_base_url:
        return SendResult.sent(f"sbx-out-{uuid.uuid4().hex}", http_status=None)
    outcome = provider_http.post_json(
        client, f"{chip.api_base_url.rstrip('/')}/messages", json={**body, "chip": chip.pk}
    )
    if isinstance(outcome, SendResult):
        return outcome
    data = provider_http.response_json(outcome)
    data = data if isinstance(data, Mapping) else {}
    if outcome.is_success and data.get("id"):
        return SendResult.sent(as_str(data["id"]), http_status=outcome.status_code)
    description = as_str(data.get("error")) or provider_http.body_excerpt(outcome)
    if outcome.is_success:
        return SendResult.failed(ErrorKind.PERMANENT, description, http_status=outcome.status_code)
    if as_str(data.get("kind")) in {kind.value for kind in ErrorKind}:
        # The simulator may name the error kind, to rehearse quarantine etc.
        return SendResult.failed(
            ErrorKind(as_str(data["kind"])),
            description,
            http_status=outcome.status_code,
            retry_after=provider_http.retry_after_seconds(outcome),
        )
    return provider_http.classify_status(outcome, description)
