"""Evolution API (v1 and v2, Baileys).

Evolution signs nothing. The URL's per-chip secret is the credential; where the
chip has `webhook_token`, the request must also carry it, either as a custom
`apikey` header (v2 `webhook.headers`) or as the HS256 `Authorization: Bearer`
JWT that v2 builds from a `jwt_key` header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
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

# Baileys' ack names (v2) and numbers (v1) for messages.update.
_ACK_STATUS = {
    "ERROR": "failed",
    "0": "failed",
    "SERVER_ACK": "sent",
    "2": "sent",
    "DELIVERY_ACK": "delivered",
    "3": "delivered",
    "READ": "read",
    "4": "read",
    "PLAYED": "read",
    "5": "read",
}
_MEDIA_KEYS = {
    "imageMessage": "image",
    "audioMessage": "audio",
    "pttMessage": "audio",
    "videoMessage": "video",
    "documentMessage": "document",
    "documentWithCaptionMessage": "document",
    "stickerMessage": "sticker",
}
_IGNORED_MESSAGE_KEYS = {
    "reactionMessage": "reaction",
    "protocolMessage": "protocol message (delete/edit)",
    "pollUpdateMessage": "poll vote",
    "senderKeyDistributionMessage": "key distribution",
}
_JWT_LEEWAY_SECONDS = 60


def _normalize_event(name: str) -> str:
    # v2 global webhooks send `MESSAGES_UPSERT`; per-instance ones `messages.upsert`.
    return name.strip().lower().replace("_", ".").replace("-", ".")


@register
class EvolutionAdapter(ProviderAdapter):
    name = "evolution"
    credential_headers = ("apikey", "Authorization")
    instance_field = "instance"
    # Evolution API v1/v2 webhook events (doc.evolution-api.com, "Webhooks").
    known_events = frozenset(
        {
            "application.startup",
            "qrcode.updated",
            "connection.update",
            "messages.set",
            "messages.upsert",
            "messages.update",
            "messages.delete",
            "send.message",
            "contacts.set",
            "contacts.upsert",
            "contacts.update",
            "presence.update",
            "chats.set",
            "chats.upsert",
            "chats.update",
            "chats.delete",
            "groups.upsert",
            "groups.update",
            "group.participants.update",
            "labels.edit",
            "labels.association",
            "call",
            "typebot.start",
            "typebot.change.status",
            "logout.instance",
            "remove.instance",
        }
    )

    def send_typing(
        self, chip: Chip, *, to: str, message_id: str, client: httpx.Client
    ) -> bool | None:
        return _evolution_send_typing(chip, to=to, client=client)

    def send_text(self, chip: Chip, *, to: str, text: str, client: httpx.Client) -> SendResult:
        return _evolution_send_text(chip, to=to, text=text, client=client)

    def send_media(
        self, chip: Chip, *, to: str, media: OutboundMedia, client: httpx.Client
    ) -> SendResult:
        return _evolution_send_media(chip, to=to, media=media, client=client)

    def verify(self, chip: Chip, headers: Mapping[str, str], body: bytes) -> bool:
        if not chip.webhook_token:
            return True
        if same_secret(header(headers, "apikey"), chip.webhook_token):
            return True
        authorization = header(headers, "Authorization")
        if authorization.lower().startswith("bearer "):
            return _valid_jwt(authorization[7:].strip(), chip.webhook_token)
        return False

    def event_type(self, payload: Any) -> str:
        if isinstance(payload, Mapping) and isinstance(payload.get("event"), str):
            return _normalize_event(payload["event"])[:100]
        return ""

    def dedupe_key(self, payload: Any, headers: Mapping[str, str]) -> str:
        event = self.event_type(payload)
        if not event:
            return ""
        data = payload.get("data")
        if event == "messages.upsert" and isinstance(data, Mapping):
            message_id = as_str(as_mapping(data.get("key")).get("id"))
            if message_id:
                return f"{event}:{message_id}"[:255]
        if event == "messages.update" and isinstance(data, Mapping):
            message_id = as_str(_update_message_id(data))
            if message_id:
                return f"{event}:{message_id}:{as_str(_update_status(data))}"[:255]
        return payload_digest(payload)

    def parse_inbound(self, payload: Any, headers: Mapping[str, str]) -> list[InboundEvent]:
        payload = require_object(payload)
        event = self.event_type(payload)
        if not event:
            raise PayloadError("not an Evolution API event: no `event`")
        if "data" not in payload:
            raise PayloadError(f"{event} without `data`")
        handler = _EVENT_HANDLERS.get(event)
        if handler is None:
            return [Ignored(reason="unhandled event", event_type=event)]
        return handler(payload["data"])


def _valid_jwt(token: str, key: str) -> bool:
    """HS256 JWT as Evolution v2 builds it ({iat, exp, app, action}); no library needed."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        header_json = json.loads(_b64decode(parts[0]))
        claims = json.loads(_b64decode(parts[1]))
        signature = _b64decode(parts[2])
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(header_json, dict) or header_json.get("alg") != "HS256":
        return False
    expected = hmac.new(key.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        return False
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return isinstance(exp, int | float) and exp + _JWT_LEEWAY_SECONDS >= time.time()


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _messages_upsert(data: Any) -> list[InboundEvent]:
    # Old v1 builds wrapped a list in `messages`; v1.8 and v2 send one message.
    if isinstance(data, Mapping) and isinstance(data.get("messages"), list):
        return [_message(as_mapping(item)) for item in data["messages"]]
    if not isinstance(data, Mapping):
        raise PayloadError("messages.upsert `data` must be an object")
    return [_message(data)]


def _message(data: Mapping[str, Any]) -> InboundEvent:
    key = data.get("key")
    if not isinstance(key, Mapping):
        raise PayloadError("messages.upsert without a `key` object")
    message_id = id_or_empty(key.get("id"), "`key.id`")
    remote_jid = id_or_empty(key.get("remoteJid"), "`key.remoteJid`")
    if not message_id or not remote_jid:
        raise PayloadError("messages.upsert without `key.id` / `key.remoteJid`")
    if remote_jid.endswith("@g.us"):
        return Ignored(reason="group message", event_type="messages.upsert")
    if remote_jid.endswith("@broadcast") or remote_jid.endswith("@newsletter"):
        return Ignored(reason="status/broadcast/newsletter", event_type="messages.upsert")
    message = as_mapping(data.get("message"))
    for ignored_key, reason in _IGNORED_MESSAGE_KEYS.items():
        if ignored_key in message:
            return Ignored(reason=reason, event_type="messages.upsert")

    # The @lid case: the phone, when WhatsApp gives it, comes in a sibling field.
    candidates = [
        remote_jid,
        id_or_empty(key.get("remoteJidAlt"), "`key.remoteJidAlt`"),
        id_or_empty(key.get("senderPn"), "`key.senderPn`"),
        id_or_empty(data.get("senderPn"), "`senderPn`"),
        id_or_empty(key.get("senderLid"), "`key.senderLid`"),
    ]
    phone = next((p for p in map(phone_or_none, candidates) if p), None)
    alt_ids = tuple(dict.fromkeys(c for c in candidates[1:] if c and c != remote_jid))

    fields: dict[str, Any] = {
        "provider_message_id": message_id,
        "sender_id": remote_jid,
        "phone": phone,
        "sender_name": as_str(data.get("pushName")),
        "from_me": bool(key.get("fromMe")),
        "timestamp": epoch_to_datetime(data.get("messageTimestamp")),
        "alt_sender_ids": alt_ids,
        "kind": "text",
        "media_url": as_str(message.get("mediaUrl") or data.get("mediaUrl")),
    }
    text = _text_of(message)
    if text is not None:
        fields["text"] = text
        return InboundMessage(**fields)
    for media_key, kind in _MEDIA_KEYS.items():
        if media_key in message:
            media = as_mapping(message[media_key])
            media = as_mapping(as_mapping(media.get("message")).get("documentMessage")) or media
            fields.update(
                kind=kind,
                text=as_str(media.get("caption") or media.get("fileName")),
                media_mime_type=as_str(media.get("mimetype")),
                media_url=fields["media_url"] or as_str(media.get("url")),
            )
            return InboundMessage(**fields)
    if "locationMessage" in message:
        location = as_mapping(message["locationMessage"])
        fields.update(
            kind="location",
            text=as_str(location.get("name") or location.get("address"))
            or f"{location.get('degreesLatitude')},{location.get('degreesLongitude')}",
        )
    elif "contactMessage" in message or "contactsArrayMessage" in message:
        fields.update(kind="contact")
    else:
        fields.update(kind="other", text="")
    return InboundMessage(**fields)


def _text_of(message: Mapping[str, Any]) -> str | None:
    """Text messages and button/list replies as their text; None for other kinds."""
    if isinstance(message.get("conversation"), str):
        return message["conversation"]
    extended = as_mapping(message.get("extendedTextMessage"))
    if "text" in extended:
        return as_str(extended["text"])
    buttons = as_mapping(message.get("buttonsResponseMessage"))
    if buttons:
        return as_str(buttons.get("selectedDisplayText") or buttons.get("selectedButtonId"))
    template = as_mapping(message.get("templateButtonReplyMessage"))
    if template:
        return as_str(template.get("selectedDisplayText") or template.get("selectedId"))
    listed = as_mapping(message.get("listResponseMessage"))
    if listed:
        row = as_str(as_mapping(listed.get("singleSelectReply")).get("selectedRowId"))
        return as_str(listed.get("title")) or row
    interactive = as_mapping(message.get("interactiveResponseMessage"))
    if interactive:
        return as_str(as_mapping(interactive.get("body")).get("text"))
    return None


def _update_message_id(data: Mapping[str, Any]) -> Any:
    return data.get("keyId") or as_mapping(data.get("key")).get("id") or data.get("id")


def _update_status(data: Mapping[str, Any]) -> Any:
    return data.get("status", as_mapping(data.get("update")).get("status"))


def _messages_update(data: Any) -> list[InboundEvent]:
    items = data if isinstance(data, list) else [data]
    events: list[InboundEvent] = []
    for item in items:
        item = as_mapping(item)
        message_id = id_or_empty(_update_message_id(item), "messages.update message id")
        raw_status = _update_status(item)
        if not message_id or not isinstance(raw_status, str | int) or isinstance(raw_status, bool):
            raise PayloadError("messages.update without a message id or a status")
        if not (item.get("fromMe", as_mapping(item.get("key")).get("fromMe", True))):
            # Acks about the lead's own messages (e.g. we read them) are not news.
            events.append(Ignored(reason="ack of an inbound message", event_type="messages.update"))
            continue
        status = _ACK_STATUS.get(as_str(raw_status).upper())
        if status is None:
            events.append(
                Ignored(reason=f"ack {as_str(raw_status)[:50]!r}", event_type="messages.update")
            )
            continue
        events.append(StatusUpdate(provider_message_id=message_id, status=status))
    return events


_CONNECTION_STATE = {"open": "connected", "close": "disconnected", "connecting": "pending"}


def _connection_update(data: Any) -> list[InboundEvent]:
    data = as_mapping(data)
    state = as_str(data.get("state"))
    if state not in _CONNECTION_STATE:
        raise PayloadError("connection.update without a known `state`")
    detail = {k: data[k] for k in ("state", "statusReason", "wuid", "profileName") if k in data}
    return [ConnectionUpdate(status=_CONNECTION_STATE[state], detail=detail)]


def _qrcode_updated(data: Any) -> list[InboundEvent]:
    qrcode = as_mapping(as_mapping(data).get("qrcode"))
    # `base64` is a data URL the admin can render; `code` is the raw pairing string.
    image = as_str(qrcode.get("base64"))
    code = image if image.startswith("data:image") else as_str(qrcode.get("code"))
    if not code:
        raise PayloadError("qrcode.updated without `qrcode.code` or `qrcode.base64`")
    detail = {"pairingCode": as_str(qrcode.get("pairingCode"))}
    return [ConnectionUpdate(status="pending", qr_code=code, detail=detail)]


def _logout(data: Any) -> list[InboundEvent]:
    return [ConnectionUpdate(status="disconnected", detail={"event": "logout.instance"})]


def _send_message(data: Any) -> list[InboundEvent]:
    return [Ignored(reason="echo of a message we sent through the API", event_type="send.message")]


_EVENT_HANDLERS = {
    "messages.upsert": _messages_upsert,
    "messages.update": _messages_update,
    "connection.update": _connection_update,
    "qrcode.updated": _qrcode_updated,
    "logout.instance": _logout,
    "send.message": _send_message,
}


# --- Sending -------------------------------------------------------------------------------
# POST {server}/message/sendText/{instance} with the `apikey` header (v2 body:
# `number`, `text`); media through /message/sendMedia (image, video, document)
# and /message/sendWhatsAppAudio (voice note). The answer carries `key.id`.


def _evolution_send_text(chip: Chip, *, to: str, text: str, client: httpx.Client) -> SendResult:
    return _evolution_post(chip, "sendText", {"number": to, "text": text}, client=client)


def _evolution_send_media(
    chip: Chip, *, to: str, media: OutboundMedia, client: httpx.Client
) -> SendResult:
    if media.kind == "audio":
        return _evolution_post(
            chip, "sendWhatsAppAudio", {"number": to, "audio": media.url}, client=client
        )
    if media.kind not in {"image", "video", "document"}:
        return SendResult.failed(
            ErrorKind.PERMANENT, gettext("unsupported media type: %(kind)s") % {"kind": media.kind}
        )
    body = {"number": to, "mediatype": media.kind, "media": media.url}
    if media.caption:
        body["caption"] = media.caption
    if media.mime_type:
        body["mimetype"] = media.mime_type
    if media.filename:
        body["fileName"] = media.filename
    return _evolution_post(chip, "sendMedia", body, client=client)


# POST {server}/chat/sendPresence/{instance} (v2): "composing" shows "digitando…"
# for `delay` ms, the length of a burst window plus a short model call.
PRESENCE_MS = 8000


def _evolution_send_typing(chip: Chip, *, to: str, client: httpx.Client) -> bool:
    if not chip.api_base_url:
        return False
    outcome = provider_http.post_json(
        client,
        f"{chip.api_base_url.rstrip('/')}/chat/sendPresence/{chip.instance_id}",
        json={"number": to, "presence": "composing", "delay": PRESENCE_MS},
        headers={"apikey": chip.api_token},
    )
    return not isinstance(outcome, SendResult) and outcome.is_success


def _evolution_post(
    chip: Chip, endpoint: str, body: dict[str, Any], *, client: httpx.Client
) -> SendResult:
    if not chip.api_base_url:
        return SendResult.failed(
            ErrorKind.PERMANENT, gettext("chip without an Evolution server URL")
        )
    outcome = provider_http.post_json(
        client,
        f"{chip.api_base_url.rstrip('/')}/message/{endpoint}/{chip.instance_id}",
        json=body,
        headers={"apikey": chip.api_token},
    )
    if isinstance(outcome, SendResult):
        return outcome
    data = as_mapping(provider_http.response_json(outcome))
    if outcome.is_success:
        message_id = as_str(as_mapping(data.get("key")).get("id"))
        if message_id:
            return SendResult.sent(message_id, http_status=outcome.status_code)
        return SendResult.failed(
            ErrorKind.PERMANENT,
            gettext("response without key.id: %(body)s")
            % {"body": provider_http.body_excerpt(outcome)},
            http_status=outcome.status_code,
        )
    response = as_mapping(data.get("response"))
    detail = response.get("message", data.get("message"))
    description = (
        json.dumps(detail, ensure_ascii=False)[:500]
        if detail is not None
        else provider_http.body_excerpt(outcome)
    )
    # 400 {"response": {"message": [{"exists": false, "number": ...}]}}: not on WhatsApp.
    if isinstance(detail, list) and any(
        isinstance(item, Mapping) and item.get("exists") is False for item in detail
    ):
        return SendResult.failed(
            ErrorKind.INVALID_RECIPIENT,
            gettext("number does not exist on WhatsApp: %(detail)s") % {"detail": description},
            http_status=outcome.status_code,
        )
    lowered = description.lower()
    if "rate-overlimit" in lowered:
        return SendResult.failed(
            ErrorKind.RATE_LIMITED,
            description,
            http_status=outcome.status_code,
            retry_after=provider_http.retry_after_seconds(outcome),
        )
    if "connection closed" in lowered or "not connected" in lowered:
        # The instance lost its WhatsApp session; it may come back.
        return SendResult.failed(ErrorKind.TRANSIENT, description, http_status=outcome.status_code)
    return provider_http.classify_status(outcome, description)
