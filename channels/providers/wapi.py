"""W-API (w-api.app).

No official webhook reference and no attributable real payload could be found
(see tests/fixtures/payloads/README.md), so this adapter is deliberately
conservative: it recognizes a received message only when the body plainly
carries a message id, a sender and text under the field names that public
third-party snippets show (`event: "webhookReceived"`, `messageId`,
`sender`/`chat`, `msgContent`, `moment`), and stores everything else as
ignored with its event name rather than guessing. Stored events can be
reprocessed from the admin once the real shapes are known.

W-API signs nothing that we know of: the URL's per-chip secret is the
credential; where the chip has `webhook_token`, an `Authorization: Bearer`
or `token` header must match it as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext

from channels import http as provider_http
from channels.providers._common import (
    as_mapping,
    as_str,
    epoch_to_datetime,
    header,
    id_or_empty,
    payload_digest,
    phone_or_none,
    require_object,
    same_secret,
)
from channels.providers.base import (
    ErrorKind,
    Ignored,
    InboundEvent,
    InboundMessage,
    ProviderAdapter,
    SendResult,
    register,
)

if TYPE_CHECKING:
    import httpx

    from channels.models import Chip


@register
class WapiAdapter(ProviderAdapter):
    name = "wapi"
    credential_headers = ("Authorization", "token")
    instance_field = "instanceId"
    # Seen in public third-party snippets only (see the module docstring).
    known_events = frozenset(
        {
            "webhookReceived",
            "webhookDelivery",
            "webhookStatus",
            "webhookConnected",
            "webhookDisconnected",
            "webhookPresence",
        }
    )

    def send_text(self, chip: Chip, *, to: str, text: str, client: httpx.Client) -> SendResult:
        return _wapi_send_text(chip, to=to, text=text, client=client)

    def verify(self, chip: Chip, headers: Mapping[str, str], body: bytes) -> bool:
        if not chip.webhook_token:
            return True
        authorization = header(headers, "Authorization")
        bearer = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
        return same_secret(bearer, chip.webhook_token) or same_secret(
            header(headers, "token"), chip.webhook_token
        )

    def event_type(self, payload: Any) -> str:
        if isinstance(payload, Mapping):
            return as_str(payload.get("event") or payload.get("type"))[:100]
        return ""

    def dedupe_key(self, payload: Any, headers: Mapping[str, str]) -> str:
        if not isinstance(payload, Mapping):
            return ""
        message_id = as_str(payload.get("messageId"))
        if message_id:
            return f"{self.event_type(payload)}:{message_id}"[:255]
        return payload_digest(payload)

    def parse_inbound(self, payload: Any, headers: Mapping[str, str]) -> list[InboundEvent]:
        payload = require_object(payload)
        event = self.event_type(payload)
        message = _message(payload)
        if message is not None:
            return [message]
        if payload.get("isGroup"):
            return [Ignored(reason="group message", event_type=event)]
        return [Ignored(reason="unrecognized W-API event (shape not verified)", event_type=event)]


def _message(payload: Mapping[str, Any]) -> InboundEvent | None:
    message_id = id_or_empty(payload.get("messageId"), "`messageId`")
    sender = as_mapping(payload.get("sender"))
    chat = as_mapping(payload.get("chat"))
    content = as_mapping(payload.get("msgContent"))
    text = content.get("conversation")
    if not isinstance(text, str):
        text = as_mapping(content.get("extendedTextMessage")).get("text")
    if payload.get("isGroup"):
        return None
    from_me = bool(payload.get("fromMe"))
    # On our own messages the sender is us; the chat is the lead.
    address = id_or_empty(
        chat.get("id") if from_me else (sender.get("id") or chat.get("id")), "sender/chat `id`"
    )
    if not message_id or not address or not isinstance(text, str):
        return None
    return InboundMessage(
        provider_message_id=message_id,
        sender_id=address,
        phone=phone_or_none(address),
        kind="text",
        text=text,
        sender_name="" if from_me else as_str(sender.get("pushName")),
        from_me=from_me,
        timestamp=epoch_to_datetime(payload.get("moment")),
    )


# --- Sending -------------------------------------------------------------------------------
# No official W-API reference was reachable. Public client code consistently
# calls POST https://api.w-api.app/v1/message/send-text?instanceId={id} with
# `Authorization: Bearer {token}` and a `phone`/`message` body, and reads a
# `messageId` (or `{"error": true, "message": ...}` on failure); that is what
# this implements. chip.api_base_url overrides the versioned root.
WAPI_ROOT = "https://api.w-api.app/v1"


def _wapi_send_text(chip: Chip, *, to: str, text: str, client: httpx.Client) -> SendResult:
    root = (chip.api_base_url or WAPI_ROOT).rstrip("/")
    outcome = provider_http.post_json(
        client,
        f"{root}/message/send-text",
        params={"instanceId": chip.instance_id},
        json={"phone": to, "message": text},
        headers={"Authorization": f"Bearer {chip.api_token}"},
    )
    if isinstance(outcome, SendResult):
        return outcome
    data = as_mapping(provider_http.response_json(outcome))
    if outcome.is_success and data.get("error") in (None, False):
        message_id = as_str(
            data.get("messageId") or data.get("insertedId") or as_mapping(data.get("key")).get("id")
        )
        if message_id:
            return SendResult.sent(message_id, http_status=outcome.status_code)
    description = as_str(data.get("message")) or provider_http.body_excerpt(outcome)
    if outcome.is_success:
        return SendResult.failed(
            ErrorKind.PERMANENT,
            gettext("response without messageId: %(detail)s") % {"detail": description},
            http_status=outcome.status_code,
        )
    return provider_http.classify_status(outcome, description)
