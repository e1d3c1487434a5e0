"""Z-API.

Z-API signs nothing and documents no webhook credential. The URL's per-chip
secret is the credential; where the chip has `webhook_token`, the
`z-api-token` header seen in real traffic must match it too. The body's
`instanceId` must match the chip's when the chip has one.
Timestamps (`momment`, sic) are epoch milliseconds.
"""

from __future__ import annotations

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

_STATUS = {"SENT": "sent", "RECEIVED": "delivered", "READ": "read", "PLAYED": "read"}
# (payload key, kind, url key)
_MEDIA = (
    ("image", "image", "imageUrl"),
    ("audio", "audio", "audioUrl"),
    ("video", "video", "videoUrl"),
    ("document", "document", "documentUrl"),
    ("sticker", "sticker", "stickerUrl"),
)


@register
class ZapiAdapter(ProviderAdapter):
    name = "zapi"
    credential_headers = ("z-api-token",)
    instance_field = "instanceId"
    # Z-API's webhook callbacks (developer.z-api.io, "Webhooks").
    known_events = frozenset(
        {
            "ReceivedCallback",
            "MessageStatusCallback",
            "DisconnectedCallback",
            "ConnectedCallback",
            "DeliveryCallback",
            "PresenceChatCallback",
        }
    )

    def send_text(self, chip: Chip, *, to: str, text: str, client: httpx.Client) -> SendResult:
        return _zapi_send_text(chip, to=to, text=text, client=client)

    def send_media(
        self, chip: Chip, *, to: str, media: OutboundMedia, client: httpx.Client
    ) -> SendResult:
        return _zapi_send_media(chip, to=to, media=media, client=client)

    def verify(self, chip: Chip, headers: Mapping[str, str], body: bytes) -> bool:
        if not chip.webhook_token:
            return True
        return same_secret(header(headers, "z-api-token"), chip.webhook_token)

    def event_type(self, payload: Any) -> str:
        if isinstance(payload, Mapping) and isinstance(payload.get("type"), str):
            return payload["type"][:100]
        return ""

    def dedupe_key(self, payload: Any, headers: Mapping[str, str]) -> str:
        event = self.event_type(payload).lower()
        if event == "receivedcallback" and payload.get("messageId"):
            return f"received:{as_str(payload['messageId'])}"[:255]
        if event == "messagestatuscallback" and as_list(payload.get("ids")):
            ids = ",".join(as_str(i) for i in payload["ids"])
            return f"status:{as_str(payload.get('status'))}:{ids}"[:255]
        return payload_digest(payload) if event else ""

    def parse_inbound(self, payload: Any, headers: Mapping[str, str]) -> list[InboundEvent]:
        payload = require_object(payload)
        event = self.event_type(payload)
        if not event:
            raise PayloadError("not a Z-API callback: no `type`")
        # The docs spell it both `ReceivedCallBack` and `ReceivedCallback`.
        handler = _HANDLERS.get(event.lower())
        if handler is None:
            return [Ignored(reason="unhandled callback", event_type=event)]
        return handler(payload)


def _received(payload: Mapping[str, Any]) -> list[InboundEvent]:
    message_id = id_or_empty(payload.get("messageId"), "`messageId`")
    phone_field = id_or_empty(payload.get("phone"), "`phone`")
    if not message_id or not phone_field:
        raise PayloadError("ReceivedCallback without `messageId` or `phone`")
    if payload.get("isGroup") or phone_field.endswith("-group"):
        return [Ignored(reason="group message", event_type="ReceivedCallback")]
    if payload.get("isNewsletter") or payload.get("broadcast"):
        return [Ignored(reason="newsletter/broadcast", event_type="ReceivedCallback")]
    if payload.get("reaction"):
        return [Ignored(reason="reaction", event_type="ReceivedCallback")]
    from_me = bool(payload.get("fromMe"))
    if from_me and payload.get("fromApi"):
        return [
            Ignored(
                reason="echo of a message we sent through the API", event_type="ReceivedCallback"
            )
        ]
    if payload.get("notification"):
        return [Ignored(reason="system notification", event_type="ReceivedCallback")]

    # `phone` is the chat (the lead, also when we wrote); `senderLid` is the
    # author, i.e. us on fromMe, so the lead's @lid is `chatLid` there.
    lids = [id_or_empty(payload.get("chatLid"), "`chatLid`")]
    if not from_me:
        lids.append(id_or_empty(payload.get("senderLid"), "`senderLid`"))
    alt_ids = tuple(dict.fromkeys(lid for lid in lids if lid and lid != phone_field))
    fields: dict[str, Any] = {
        "provider_message_id": message_id,
        "sender_id": phone_field,
        "phone": phone_or_none(phone_field),
        "sender_name": ""
        if from_me
        else as_str(payload.get("senderName") or payload.get("chatName")),
        "from_me": from_me,
        "timestamp": epoch_to_datetime(payload.get("momment")),
        "alt_sender_ids": alt_ids,
        "kind": "text",
    }
    text = as_mapping(payload.get("text"))
    buttons = as_mapping(payload.get("buttonsResponseMessage"))
    listed = as_mapping(payload.get("listResponseMessage"))
    button_reply = as_mapping(payload.get("buttonReply"))
    if text:
        fields["text"] = as_str(text.get("message"))
    elif buttons:
        fields["text"] = as_str(buttons.get("message") or buttons.get("buttonId"))
    elif listed:
        fields["text"] = as_str(listed.get("title") or listed.get("message"))
    elif button_reply:
        fields["text"] = as_str(button_reply.get("message") or button_reply.get("buttonId"))
    else:
        for key, kind, url_key in _MEDIA:
            media = as_mapping(payload.get(key))
            if media:
                fields.update(
                    kind=kind,
                    media_url=as_str(media.get(url_key)),
                    media_mime_type=as_str(media.get("mimeType")),
                    text=as_str(media.get("caption") or media.get("fileName")),
                )
                break
        else:
            if payload.get("location"):
                location = as_mapping(payload.get("location"))
                fields.update(
                    kind="location",
                    text=as_str(location.get("name") or location.get("address"))
                    or f"{location.get('latitude')},{location.get('longitude')}",
                )
            elif payload.get("contact"):
                fields.update(
                    kind="contact", text=as_str(as_mapping(payload["contact"]).get("displayName"))
                )
            else:
                fields.update(kind="other")
    return [InboundMessage(**fields)]


def _status(payload: Mapping[str, Any]) -> list[InboundEvent]:
    ids = payload.get("ids")
    raw = payload.get("status")
    if not isinstance(ids, list) or not ids or not raw or not isinstance(raw, str):
        raise PayloadError("MessageStatusCallback without `ids` or a `status` string")
    ids = [id_or_empty(item, "MessageStatusCallback `ids` item") for item in ids]
    if not all(ids):
        raise PayloadError("MessageStatusCallback with an empty id")
    raw = raw.upper()
    if payload.get("isGroup"):
        return [Ignored(reason="group message status", event_type="MessageStatusCallback")]
    status = _STATUS.get(raw)
    if status is None:
        return [Ignored(reason=f"status {raw[:50]}", event_type="MessageStatusCallback")]
    when = epoch_to_datetime(payload.get("momment"))
    return [StatusUpdate(provider_message_id=i, status=status, timestamp=when) for i in ids]


def _disconnected(payload: Mapping[str, Any]) -> list[InboundEvent]:
    detail = {"error": as_str(payload.get("error")), "momment": payload.get("momment")}
    return [ConnectionUpdate(status="disconnected", detail=detail)]


def _connected(payload: Mapping[str, Any]) -> list[InboundEvent]:
    return [ConnectionUpdate(status="connected", detail={"phone": as_str(payload.get("phone"))})]


def _delivery(payload: Mapping[str, Any]) -> list[InboundEvent]:
    # Z-API's "message handed to WhatsApp"; the outbox already has the id from the send call.
    return [Ignored(reason="send confirmation", event_type="DeliveryCallback")]


_HANDLERS = {
    "receivedcallback": _received,
    "messagestatuscallback": _status,
    "disconnectedcallback": _disconnected,
    "connectedcallback": _connected,
    "deliverycallback": _delivery,
}


# --- Sending -------------------------------------------------------------------------------
# POST https://api.z-api.io/instances/{id}/token/{token}/send-text with the
# account's `Client-Token` header; body `phone`, `message`; the answer has
# `zaapId` and `messageId` (developer.z-api.io). Media: send-image, send-audio,
# send-video, send-document/{extension}. chip.api_base_url overrides the host.
ZAPI_ROOT = "https://api.z-api.io"


def _zapi_send_text(chip: Chip, *, to: str, text: str, client: httpx.Client) -> SendResult:
    return _zapi_post(chip, "send-text", {"phone": to, "message": text}, client=client)


def _zapi_send_media(
    chip: Chip, *, to: str, media: OutboundMedia, client: httpx.Client
) -> SendResult:
    if media.kind in {"image", "video"}:
        body = {"phone": to, media.kind: media.url}
        if media.caption:
            body["caption"] = media.caption
        return _zapi_post(chip, f"send-{media.kind}", body, client=client)
    if media.kind == "audio":
        return _zapi_post(chip, "send-audio", {"phone": to, "audio": media.url}, client=client)
    if media.kind == "document":
        name = media.filename or media.url.rsplit("/", 1)[-1]
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else "pdf"
        body = {"phone": to, "document": media.url}
        if media.filename:
            body["fileName"] = media.filename
        return _zapi_post(chip, f"send-document/{extension}", body, client=client)
    return SendResult.failed(
        ErrorKind.PERMANENT, gettext("unsupported media type: %(kind)s") % {"kind": media.kind}
    )


def _zapi_post(
    chip: Chip, endpoint: str, body: dict[str, Any], *, client: httpx.Client
) -> SendResult:
    root = (chip.api_base_url or ZAPI_ROOT).rstrip("/")
    headers = {"Client-Token": chip.client_token} if chip.client_token else {}
    outcome = provider_http.post_json(
        client,
        f"{root}/instances/{chip.instance_id}/token/{chip.api_token}/{endpoint}",
        json=body,
        headers=headers,
    )
    if isinstance(outcome, SendResult):
        return outcome
    data = as_mapping(provider_http.response_json(outcome))
    if outcome.is_success and not data.get("error"):
        message_id = as_str(data.get("messageId") or data.get("id"))
        if message_id:
            return SendResult.sent(message_id, http_status=outcome.status_code)
    description = (
        as_str(data.get("error")) + " " + as_str(data.get("message"))
    ).strip() or provider_http.body_excerpt(outcome)
    lowered = description.lower()
    if "client-token" in lowered or ("token" in lowered and "invalid" in lowered):
        return SendResult.failed(ErrorKind.AUTH, description, http_status=outcome.status_code)
    if "not connected" in lowered or "não está conectad" in lowered:
        return SendResult.failed(ErrorKind.TRANSIENT, description, http_status=outcome.status_code)
    if outcome.is_success:
        return SendResult.failed(
            ErrorKind.PERMANENT,
            gettext("response without messageId: %(detail)s") % {"detail": description},
            http_status=outcome.status_code,
        )
    return provider_http.classify_status(outcome, description)
