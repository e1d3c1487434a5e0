"""Meta WhatsApp Cloud API.

Webhooks are signed: `X-Hub-Signature-256: sha256=<HMAC-SHA256(app secret, raw body)>`.
Meta batches up to 1000 updates per delivery and retries for 36 h, so one
body may carry several messages and statuses, and may arrive more than once.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext

from channels import http as provider_http
from channels.providers._common import (
    as_list,
    as_mapping,
    as_str,
    epoch_to_datetime,
    header,
    id_or_empty,
    payload_digest,
    phone_or_none,
    require_list,
    require_object,
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

_MEDIA_KINDS = {
    "image": "image",
    "audio": "audio",
    "voice": "audio",
    "video": "video",
    "document": "document",
    "sticker": "sticker",
}
_STATUSES = {"sent", "delivered", "read", "failed"}


@register
class MetaAdapter(ProviderAdapter):
    name = "meta"
    credential_headers = ("X-Hub-Signature-256",)
    always_signed = True
    known_events = frozenset(
        {
            "messages",
            "statuses",
            "phone_number_quality_update",
            "account_update",
            "account_alerts",
            "batch",
        }
    )

    def send_typing(
        self, chip: Chip, *, to: str, message_id: str, client: httpx.Client
    ) -> bool | None:
        return _meta_send_typing(chip, message_id=message_id, client=client)

    def send_text(self, chip: Chip, *, to: str, text: str, client: httpx.Client) -> SendResult:
        return _meta_send_text(chip, to=to, text=text, client=client)

    def send_media(
        self, chip: Chip, *, to: str, media: OutboundMedia, client: httpx.Client
    ) -> SendResult:
        return _meta_send_media(chip, to=to, media=media, client=client)

    def verify(self, chip: Chip, headers: Mapping[str, str], body: bytes) -> bool:
        # Meta always signs; a chip without its app secret cannot be verified.
        if not chip.app_secret:
            return False
        given = header(headers, "X-Hub-Signature-256")
        # A hex digest is ASCII; anything else cannot match (and compare_digest
        # refuses non-ASCII str).
        if not given.startswith("sha256=") or not given.isascii():
            return False
        expected = hmac.new(chip.app_secret.encode(), body, hashlib.sha256).hexdigest()
        given_digest = given.removeprefix("sha256=").strip().lower()
        return hmac.compare_digest(given_digest.encode(), expected.encode())

    def verify_handshake(self, chip: Chip, params: Mapping[str, str]) -> str | None:
        """The GET subscription check: the challenge to echo, or None to refuse."""
        mode = params.get("hub.mode") or params.get("hub_mode")
        token = params.get("hub.verify_token") or params.get("hub_verify_token") or ""
        challenge = params.get("hub.challenge") or params.get("hub_challenge")
        if mode != "subscribe" or not challenge or not chip.verify_token:
            return None
        if not hmac.compare_digest(token.encode(), chip.verify_token.encode()):
            return None
        return challenge

    def event_type(self, payload: Any) -> str:
        fields = []
        for change in _changes(payload, strict=False):
            field_name = as_str(change.get("field"))
            value = as_mapping(change.get("value"))
            if field_name == "messages":
                field_name = (
                    "statuses"
                    if value.get("statuses") and not value.get("messages")
                    else "messages"
                )
            if field_name and field_name not in fields:
                fields.append(field_name)
        return ",".join(fields)[:100]

    def metric_event(self, event_type: str) -> str:
        # One delivery may batch several fields: "messages,statuses".
        parts = event_type.split(",") if event_type else []
        if len(parts) > 1 and all(part in self.known_events for part in parts):
            return "batch"
        return super().metric_event(event_type)

    def dedupe_key(self, payload: Any, headers: Mapping[str, str]) -> str:
        ids = []
        for change in _changes(payload, strict=False):
            value = as_mapping(change.get("value"))
            for message in as_list(value.get("messages")):
                ids.append("msg:" + as_str(as_mapping(message).get("id")))
            for status in as_list(value.get("statuses")):
                status = as_mapping(status)
                ids.append(f"status:{as_str(status.get('id'))}:{as_str(status.get('status'))}")
        if len(ids) == 1:
            return ids[0][:255]
        # A batch or a non-message change: the same delivery retried has the same body.
        return payload_digest(payload)

    def parse_inbound(self, payload: Any, headers: Mapping[str, str]) -> list[InboundEvent]:
        events: list[InboundEvent] = []
        for change in _changes(payload, strict=True):
            field_name = as_str(change.get("field"))
            value = change.get("value")
            if not isinstance(value, Mapping):
                raise PayloadError(f"change {field_name!r} has no value object")
            handler = _FIELD_HANDLERS.get(field_name)
            if handler is None:
                events.append(Ignored(reason="unhandled webhook field", event_type=field_name))
            else:
                events.extend(handler(value))
        return events


def _changes(payload: Any, *, strict: bool) -> list[Mapping[str, Any]]:
    if not isinstance(payload, Mapping) or not isinstance(payload.get("entry"), list):
        if strict:
            require_object(payload)
            raise PayloadError("not a WhatsApp Cloud API notification: no `entry` list")
        return []
    if strict and payload.get("object") not in (None, "whatsapp_business_account"):
        raise PayloadError(f"unexpected object {payload.get('object')!r}")
    changes: list[Mapping[str, Any]] = []
    for entry in payload["entry"]:
        entry_changes = as_mapping(entry).get("changes")
        if not isinstance(entry_changes, list):
            if strict:
                raise PayloadError("entry without a `changes` list")
            continue
        changes.extend(as_mapping(change) for change in entry_changes)
    return changes


def _messages_change(value: Mapping[str, Any]) -> list[InboundEvent]:
    events: list[InboundEvent] = []
    contacts = {}
    for contact in require_list(value, "contacts", "messages change"):
        contact = as_mapping(contact)
        key = as_str(contact.get("wa_id") or contact.get("user_id"))
        contacts[key] = contact
    for message in require_list(value, "messages", "messages change"):
        events.append(_message(as_mapping(message), contacts))
    for status in require_list(value, "statuses", "messages change"):
        events.append(_status(as_mapping(status)))
    return events


def _message(message: Mapping[str, Any], contacts: Mapping[str, Any]) -> InboundEvent:
    message_id = id_or_empty(message.get("id"), "message `id`")
    # Business-scoped user ids may replace the phone in `from`; keep both addresses.
    sender = id_or_empty(message.get("from") or message.get("from_user_id"), "message `from`")
    if not message_id or not sender:
        raise PayloadError("message without `id` or `from`")
    kind_name = as_str(message.get("type"))
    if kind_name == "reaction":
        return Ignored(reason="reaction", event_type="reaction")
    if kind_name in ("system", "unsupported", "ephemeral", "request_welcome"):
        return Ignored(reason=f"{kind_name} message", event_type=kind_name)
    contact = as_mapping(contacts.get(sender))
    alt_ids = tuple(
        address
        for address in (
            id_or_empty(contact.get("wa_id"), "contact `wa_id`"),
            id_or_empty(contact.get("user_id"), "contact `user_id`"),
            id_or_empty(message.get("from_user_id"), "message `from_user_id`"),
        )
        if address and address != sender
    )
    fields: dict[str, Any] = {
        "provider_message_id": message_id,
        "sender_id": sender,
        "phone": phone_or_none(as_str(message.get("from"))),
        "sender_name": as_str(as_mapping(contact.get("profile")).get("name")),
        "timestamp": epoch_to_datetime(message.get("timestamp")),
        "alt_sender_ids": tuple(dict.fromkeys(alt_ids)),
        "kind": "text",
    }
    if kind_name == "text":
        fields["text"] = as_str(as_mapping(message.get("text")).get("body"))
    elif kind_name == "interactive":
        interactive = as_mapping(message.get("interactive"))
        reply = as_mapping(
            interactive.get("button_reply")
            or interactive.get("list_reply")
            or interactive.get("nfm_reply")
        )
        fields["text"] = as_str(reply.get("title") or reply.get("body") or reply.get("id"))
    elif kind_name == "button":
        button = as_mapping(message.get("button"))
        fields["text"] = as_str(button.get("text") or button.get("payload"))
    elif kind_name in _MEDIA_KINDS:
        media = as_mapping(message.get(kind_name))
        fields.update(
            kind=_MEDIA_KINDS[kind_name],
            media_id=as_str(media.get("id")),
            media_url=as_str(media.get("url")),
            media_mime_type=as_str(media.get("mime_type")),
            text=as_str(media.get("caption") or media.get("filename")),
        )
    elif kind_name == "location":
        location = as_mapping(message.get("location"))
        fields.update(
            kind="location",
            text=as_str(location.get("name") or location.get("address"))
            or f"{location.get('latitude')},{location.get('longitude')}",
        )
    elif kind_name == "contacts":
        fields["kind"] = "contact"
    else:
        fields["kind"] = "other"
    return InboundMessage(**fields)


def _status(status: Mapping[str, Any]) -> InboundEvent:
    message_id = id_or_empty(status.get("id"), "status `id`")
    value = status.get("status")
    if not message_id or not value or not isinstance(value, str):
        raise PayloadError("status without `id` or a `status` string")
    if value not in _STATUSES:
        return Ignored(reason=f"status {value[:50]!r}", event_type="statuses")
    errors = [as_mapping(error) for error in require_list(status, "errors", "status")]
    first = errors[0] if errors else {}
    detail = as_str(as_mapping(first.get("error_data")).get("details"))
    return StatusUpdate(
        provider_message_id=message_id,
        status=value,
        timestamp=epoch_to_datetime(status.get("timestamp")),
        error_code=as_str(first.get("code")),
        error=" - ".join(part for part in (as_str(first.get("title")), detail) if part),
    )


def _quality_change(value: Mapping[str, Any]) -> list[InboundEvent]:
    # `event` is FLAGGED/UNFLAGGED/DOWNGRADE/UPGRADE; newer payloads add the rating.
    rating = as_str(value.get("current_quality_rating") or value.get("quality_rating"))
    if not rating and value.get("event") in ("FLAGGED", "UNFLAGGED"):
        rating = "RED" if value.get("event") == "FLAGGED" else "GREEN"
    return [ConnectionUpdate(status=None, quality_rating=rating, detail=dict(value))]


_ACCOUNT_STATUS = {
    "DISABLED_UPDATE": "banned",
    "ACCOUNT_VIOLATION": "restricted",
    "ACCOUNT_RESTRICTION": "restricted",
}


def _account_change(value: Mapping[str, Any]) -> list[InboundEvent]:
    status = _ACCOUNT_STATUS.get(as_str(value.get("event")))
    ban_state = as_str(as_mapping(value.get("ban_info")).get("waba_ban_state"))
    if ban_state in ("DISABLE", "SCHEDULE_FOR_DISABLE"):
        status = "banned" if ban_state == "DISABLE" else "restricted"
    return [ConnectionUpdate(status=status, detail=dict(value))]


def _alerts_change(value: Mapping[str, Any]) -> list[InboundEvent]:
    return [ConnectionUpdate(status=None, detail=dict(value))]


_FIELD_HANDLERS = {
    "messages": _messages_change,
    "phone_number_quality_update": _quality_change,
    "account_update": _account_change,
    "account_alerts": _alerts_change,
}


# --- Sending -------------------------------------------------------------------------------
# POST /{phone-number-id}/messages (Cloud API). chip.api_base_url, when set,
# replaces the versioned Graph root (tests point it at a local fake server).
GRAPH_API_ROOT = "https://graph.facebook.com/v21.0"

# Meta's Cloud API error codes (developers.facebook.com, WhatsApp error codes),
# grouped by what the outbox must do; anything else falls back to the HTTP status.
_META_ERROR_KINDS: dict[int, ErrorKind] = {
    # Authorization: token expired or revoked, missing permission.
    0: ErrorKind.AUTH,
    3: ErrorKind.AUTH,
    10: ErrorKind.AUTH,
    190: ErrorKind.AUTH,
    200: ErrorKind.AUTH,
    131005: ErrorKind.AUTH,
    # Throttling: app/number throughput, spam rate limit, pair rate limit.
    4: ErrorKind.RATE_LIMITED,
    80007: ErrorKind.RATE_LIMITED,
    130429: ErrorKind.RATE_LIMITED,
    131048: ErrorKind.RATE_LIMITED,
    131056: ErrorKind.RATE_LIMITED,
    # Integrity: the number is blocked or locked by Meta.
    368: ErrorKind.RESTRICTED,
    130497: ErrorKind.RESTRICTED,
    131031: ErrorKind.RESTRICTED,
    # The recipient cannot get this message (undeliverable, outside the 24 h
    # re-engagement window, not in the test allow-list, stopped marketing).
    131026: ErrorKind.INVALID_RECIPIENT,
    131030: ErrorKind.INVALID_RECIPIENT,
    131047: ErrorKind.INVALID_RECIPIENT,
    131049: ErrorKind.INVALID_RECIPIENT,
    131050: ErrorKind.INVALID_RECIPIENT,
    # Meta-side trouble: retry later.
    1: ErrorKind.TRANSIENT,
    2: ErrorKind.TRANSIENT,
    131000: ErrorKind.TRANSIENT,
    131016: ErrorKind.TRANSIENT,
    133004: ErrorKind.TRANSIENT,
}
_META_MEDIA_TYPES = {"image", "audio", "video", "document", "sticker"}


def _meta_send_text(chip: Chip, *, to: str, text: str, client: httpx.Client) -> SendResult:
    return _meta_post(
        chip, {"type": "text", "text": {"preview_url": False, "body": text}}, to=to, client=client
    )


def _meta_send_media(
    chip: Chip, *, to: str, media: OutboundMedia, client: httpx.Client
) -> SendResult:
    if media.kind not in _META_MEDIA_TYPES:
        return SendResult.failed(
            ErrorKind.PERMANENT, gettext("unsupported media type: %(kind)s") % {"kind": media.kind}
        )
    content: dict[str, str] = {"link": media.url}
    # Meta rejects a caption on audio and stickers, and names documents.
    if media.caption and media.kind in {"image", "video", "document"}:
        content["caption"] = media.caption
    if media.kind == "document" and media.filename:
        content["filename"] = media.filename
    return _meta_post(chip, {"type": media.kind, media.kind: content}, to=to, client=client)


def _meta_send_typing(chip: Chip, *, message_id: str, client: httpx.Client) -> bool:
    """Cloud API typing indicator: marks the lead's message read and shows "digitando…"
    (up to 25 s or until our reply)."""
    if not message_id:
        return False
    root = (chip.api_base_url or GRAPH_API_ROOT).rstrip("/")
    outcome = provider_http.post_json(
        client,
        f"{root}/{chip.instance_id}/messages",
        json={
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
            "typing_indicator": {"type": "text"},
        },
        headers={"Authorization": f"Bearer {chip.api_token}"},
    )
    return not isinstance(outcome, SendResult) and outcome.is_success


def _meta_post(chip: Chip, message: dict[str, Any], *, to: str, client: httpx.Client) -> SendResult:
    root = (chip.api_base_url or GRAPH_API_ROOT).rstrip("/")
    outcome = provider_http.post_json(
        client,
        f"{root}/{chip.instance_id}/messages",
        json={"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, **message},
        headers={"Authorization": f"Bearer {chip.api_token}"},
    )
    if isinstance(outcome, SendResult):
        return outcome
    data = as_mapping(provider_http.response_json(outcome))
    if outcome.is_success:
        messages = data.get("messages")
        first = as_mapping(messages[0]) if isinstance(messages, list) and messages else {}
        wamid = as_str(first.get("id"))
        if wamid:
            return SendResult.sent(wamid, http_status=outcome.status_code)
        # Accepted without an id: retrying could send twice, so do not.
        return SendResult.failed(
            ErrorKind.PERMANENT,
            gettext("response without a message id: %(body)s")
            % {"body": provider_http.body_excerpt(outcome)},
            http_status=outcome.status_code,
        )
    error = as_mapping(data.get("error"))
    details = as_str(as_mapping(error.get("error_data")).get("details"))
    description = as_str(error.get("message")) or provider_http.body_excerpt(outcome)
    if details:
        description = f"{description} ({details})"
    try:
        code = int(error.get("code"))
    except (TypeError, ValueError):
        code = None
    fallback = provider_http.classify_status(outcome, description)
    kind = _META_ERROR_KINDS.get(code) if code is not None else None
    if kind is None:
        kind = fallback.error_kind
    return SendResult.failed(
        kind,
        description,
        error_code="" if code is None else str(code),
        http_status=outcome.status_code,
        retry_after=fallback.retry_after,
    )
