"""Real-shaped inbound text messages for every provider, each with its own id and lead.

Built from the real payloads in tests/fixtures/payloads (W-API, which has
none, from the shape its adapter documents), with the message id and the
sender changed so that delivery `seq` is a new message from a new lead.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

from channels.models import Chip
from tests.channels.webhooks import auth_headers, load_fixture_json, webhook_url

PROVIDERS = ("meta", "evolution", "zapi", "wapi", "sandbox")


@dataclass(frozen=True)
class Delivery:
    provider: str
    message_id: str
    path: str
    body: bytes
    headers: dict[str, str]


def lead_phone(seq: int) -> str:
    """A valid Brazilian mobile number (digits only), unique per `seq`."""
    return f"551199{seq:07d}"


def text_delivery(chip: Chip, seq: int, *, text: str = "Oi, quero saber mais") -> Delivery:
    phone = lead_phone(seq)
    message_id, payload = _BUILDERS[chip.provider](seq, phone, text)
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **auth_headers(chip, body)}
    return Delivery(chip.provider, message_id, webhook_url(chip), body, headers)


def _meta(seq: int, phone: str, text: str) -> tuple[str, dict]:
    payload = copy.deepcopy(load_fixture_json("meta", "messages__text"))
    value = payload["entry"][0]["changes"][0]["value"]
    message_id = f"wamid.REL{seq:010d}"
    value["contacts"][0]["wa_id"] = phone
    value["messages"][0].update({"id": message_id, "from": phone, "text": {"body": text}})
    return message_id, payload


def _evolution(seq: int, phone: str, text: str) -> tuple[str, dict]:
    payload = copy.deepcopy(load_fixture_json("evolution", "messages_upsert__text_incoming_v1"))
    message_id = f"3EBREL{seq:010d}"
    payload["data"]["key"].update({"id": message_id, "remoteJid": f"{phone}@s.whatsapp.net"})
    payload["data"]["message"]["conversation"] = text
    return message_id, payload


def _zapi(seq: int, phone: str, text: str) -> tuple[str, dict]:
    payload = copy.deepcopy(load_fixture_json("zapi", "received__text"))
    message_id = f"REL{seq:010d}"
    payload.update({"messageId": message_id, "phone": phone, "senderLid": f"9{seq:013d}@lid"})
    payload["text"]["message"] = text
    return message_id, payload


def _wapi(seq: int, phone: str, text: str) -> tuple[str, dict]:
    message_id = f"WREL{seq:010d}"
    return message_id, {
        "event": "webhookReceived",
        "messageId": message_id,
        "fromMe": False,
        "isGroup": False,
        "sender": {"id": phone, "pushName": "Lead"},
        "chat": {"id": phone},
        "msgContent": {"conversation": text},
        "moment": 1763780000,
    }


def _sandbox(seq: int, phone: str, text: str) -> tuple[str, dict]:
    payload = copy.deepcopy(load_fixture_json("sandbox", "message__text"))
    message_id = f"sbx-rel-{seq:010d}"
    payload.update({"id": message_id, "from": f"+{phone}", "text": text})
    return message_id, payload


_BUILDERS = {
    "meta": _meta,
    "evolution": _evolution,
    "zapi": _zapi,
    "wapi": _wapi,
    "sandbox": _sandbox,
}
