"""What a Chatwoot webhook event means for our conversations.

Chatwoot is where SDRs work: a message an agent (a human user) writes there
goes to the lead through the conversation's chip and makes the human the
owner; a private note `/retomar` gives the conversation back to the agent,
`/pausar` pauses it; the handoff label (CHATWOOT_HANDOFF_LABEL) opens a
handoff while it is set, and removing it or resolving the conversation gives
the conversation back. Our own mirrored messages coming back are ignored.

Every event is handled once: the delivery is recorded (`ChatwootDelivery`) in
the same transaction as its effects.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.translation import gettext

from conversations.chatwoot_mirror import (
    MIRROR_MARKER,
    MIRROR_SOURCE_PREFIX,
    chatwoot_labels_are_ours,
    chatwoot_mirror_is_echo,
    chatwoot_mirror_written_there,
)
from conversations.handoffs import handoff_open
from conversations.models import ChatwootDelivery, Conversation, Handoff, Lead
from conversations.ownership import OwnershipError, conversation_set_owner
from conversations.sdr import conversation_reply_as_human
from core.phones import to_e164

logger = logging.getLogger(__name__)

Owner = Conversation.ControlledBy
RESUME_COMMAND = "/retomar"
PAUSE_COMMAND = "/pausar"


class ChatwootRefused(Exception):
    """The delivery is refused (4xx): `code` and `status` go into the JSON answer."""

    def __init__(self, code: str, detail: str, status: int) -> None:
        super().__init__(detail)
        self.code, self.detail, self.status = code, detail, status


@dataclass(frozen=True)
class ChatwootResult:
    outcome: str
    conversation_id: int | None = None


# --- Authentication ------------------------------------------------------------------------


def chatwoot_authenticate(*, token: str, headers: Mapping[str, str], body: bytes) -> None:
    """The secret URL token (every version), and the signature when a secret is configured.

    Recent Chatwoot signs `"{X-Chatwoot-Timestamp}.{raw body}"` with the
    webhook's secret (HMAC-SHA256, `X-Chatwoot-Signature: sha256=<hex>`);
    a timestamp further than CHATWOOT_WEBHOOK_MAX_AGE_SECONDS from now is a
    replay and refused.
    """
    expected = settings.CHATWOOT_WEBHOOK_TOKEN
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise ChatwootRefused("not_found", "not found", 404)
    secret = settings.CHATWOOT_WEBHOOK_SECRET
    if not secret:
        return
    signature = headers.get("X-Chatwoot-Signature", "")
    timestamp = headers.get("X-Chatwoot-Timestamp", "")
    if not signature or not timestamp:
        raise ChatwootRefused("unauthenticated", "X-Chatwoot-Signature missing", 401)
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        raise ChatwootRefused("forbidden", "bad X-Chatwoot-Timestamp", 403) from None
    if age > settings.CHATWOOT_WEBHOOK_MAX_AGE_SECONDS:
        raise ChatwootRefused("forbidden", "stale X-Chatwoot-Timestamp", 403)
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    if not hmac.compare_digest(signature.encode(), f"sha256={digest.hexdigest()}".encode()):
        raise ChatwootRefused("forbidden", "signature does not match", 403)


def chatwoot_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """The header value Chatwoot sends (for tests and for our own mirror's checks)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


# --- Events ----------------------------------------------------------------------------------


def chatwoot_event_handle(*, payload: Any, delivery: str) -> ChatwootResult:
    """Apply one Chatwoot event once; a delivery seen before does nothing."""
    if not isinstance(payload, dict):
        raise ChatwootRefused("invalid", "body is not a JSON object", 400)
    event = _text(payload.get("event"))
    key = delivery[:200] or _fallback_key(event, payload)
    with transaction.atomic():
        record = None
        if key:
            try:
                with transaction.atomic():
                    record = ChatwootDelivery.objects.create(key=key, event=event[:50], outcome="")
            except IntegrityError:
                return ChatwootResult("duplicate")
        result = _dispatch(event, payload)
        if record is not None:
            record.outcome = result.outcome[:50]
            record.conversation_id = result.conversation_id
            record.save(update_fields=["outcome", "conversation"])
    return result


def _fallback_key(event: str, payload: dict[str, Any]) -> str:
    # Older Chatwoot sends no delivery id: a message is still applied once.
    if event == "message_created" and _text(payload.get("id")) not in ("", "0"):
        return f"message:{_text(payload.get('id'))}"
    return ""


def _dispatch(event: str, payload: dict[str, Any]) -> ChatwootResult:
    if event == "message_created":
        return _message_created(payload)
    if event == "conversation_updated":
        return _conversation_updated(payload)
    if event in ("conversation_status_changed", "conversation_resolved"):
        return _conversation_status(payload)
    return ChatwootResult("ignored_event")


def _message_created(payload: dict[str, Any]) -> ChatwootResult:
    raw_conversation = _dict(payload.get("conversation"))
    sender = _dict(payload.get("sender"))
    content = _text(payload.get("content")).strip()
    message_type = _text(payload.get("message_type"))
    if _is_our_mirror(payload):
        return ChatwootResult("own_mirror")
    if message_type not in ("outgoing", "1") or _text(sender.get("type")).lower() != "user":
        # The lead's messages reach us from WhatsApp, and bots are not humans.
        return ChatwootResult("ignored_message")
    conversation = _conversation_for(raw_conversation)
    if conversation is None:
        return ChatwootResult("unknown_conversation")
    who = f"chatwoot:{_text(sender.get('name'))[:100] or _text(sender.get('id'))}"
    try:
        if payload.get("private") is True:
            return _private_note(conversation, content=content, who=who)
        if not content:
            return ChatwootResult("no_text", conversation.pk)
        message = conversation_reply_as_human(
            conversation=conversation,
            user=None,
            body=content[:4096],
            actor_label=who,
            handoff_reason=Handoff.Reason.HUMAN_REPLIED,
        )
        # Written in Chatwoot: the mirror must never post it back there.
        chatwoot_mirror_written_there(message=message, remote_id=_text(payload.get("id")))
    except OwnershipError:
        return ChatwootResult("conversation_closed", conversation.pk)
    return ChatwootResult("human_reply", conversation.pk)


def _private_note(conversation: Conversation, *, content: str, who: str) -> ChatwootResult:
    command = content.split()[0].lower() if content else ""
    if command == RESUME_COMMAND:
        conversation_set_owner(
            conversation=conversation,
            owner=Owner.AGENT,
            reason=gettext("/retomar in Chatwoot"),
            actor_label=who,
        )
        return ChatwootResult("resumed", conversation.pk)
    if command == PAUSE_COMMAND:
        conversation_set_owner(
            conversation=conversation,
            owner=Owner.PAUSED,
            reason=gettext("/pausar in Chatwoot"),
            actor_label=who,
        )
        return ChatwootResult("paused", conversation.pk)
    return ChatwootResult("private_note", conversation.pk)


def _conversation_updated(payload: dict[str, Any]) -> ChatwootResult:
    label = settings.CHATWOOT_HANDOFF_LABEL
    change = _label_change(payload)
    if change is None:
        return ChatwootResult("ignored_update")
    previous, current = change
    conversation = _conversation_for(payload)
    if conversation is None:
        return ChatwootResult("unknown_conversation")
    if chatwoot_labels_are_ours(conversation=conversation, previous=previous, current=current):
        # Our own label sync coming back (it may arrive after the handoff moved on).
        return ChatwootResult("own_labels", conversation.pk)
    try:
        if label in current and label not in previous:
            handoff_open(
                conversation=conversation,
                reason=Handoff.Reason.CHATWOOT_LABEL,
                note=gettext("Label '%(label)s' in Chatwoot") % {"label": label},
                actor_label="chatwoot",
            )
            return ChatwootResult("handoff_opened", conversation.pk)
        if label in previous and label not in current:
            return _give_back(
                conversation,
                reason=gettext("Label '%(label)s' removed in Chatwoot") % {"label": label},
            )
    except OwnershipError:
        return ChatwootResult("conversation_closed", conversation.pk)
    return ChatwootResult("labels_unchanged", conversation.pk)


def _conversation_status(payload: dict[str, Any]) -> ChatwootResult:
    if _text(payload.get("status")) != "resolved":
        return ChatwootResult("ignored_status")
    conversation = _conversation_for(payload)
    if conversation is None:
        return ChatwootResult("unknown_conversation")
    try:
        return _give_back(conversation, reason=gettext("Conversation resolved in Chatwoot"))
    except OwnershipError:
        return ChatwootResult("conversation_closed", conversation.pk)


def _give_back(conversation: Conversation, *, reason: str) -> ChatwootResult:
    """Back to the agent, but only from a human: a paused conversation stays paused."""
    if conversation.controlled_by != Owner.HUMAN:
        return ChatwootResult("not_with_a_human", conversation.pk)
    conversation_set_owner(
        conversation=conversation, owner=Owner.AGENT, reason=reason, actor_label="chatwoot"
    )
    return ChatwootResult("given_back", conversation.pk)


def _label_change(payload: dict[str, Any]) -> tuple[list[str], list[str]] | None:
    """(previous, current) label lists when this update changed them."""
    changed = payload.get("changed_attributes")
    for item in changed if isinstance(changed, list) else []:
        labels = _dict(_dict(item).get("label_list"))
        if labels:
            return _strings(labels.get("previous_value")), _strings(labels.get("current_value"))
    return None


def _is_our_mirror(payload: dict[str, Any]) -> bool:
    attributes = _dict(payload.get("content_attributes"))
    if MIRROR_MARKER in attributes:
        return True
    if _text(payload.get("source_id")).startswith(MIRROR_SOURCE_PREFIX):
        return True
    sender = _dict(payload.get("sender"))
    # Messages our API token created are sent by the bot, not a user.
    if _text(sender.get("type")).lower() == "agent_bot":
        return True
    # Older Chatwoot keeps neither marker: the message id the mirror stored,
    # or the text of a write still in flight.
    return chatwoot_mirror_is_echo(
        chatwoot_conversation_id=_text(_dict(payload.get("conversation")).get("id")),
        message_id=_text(payload.get("id")),
        content=_text(payload.get("content")).strip(),
    )


def _conversation_for(raw: dict[str, Any]) -> Conversation | None:
    """Ours for a Chatwoot conversation: by its id (the mirror stored it), else the contact's phone.

    A conversation found by phone remembers the Chatwoot id from then on.
    """
    chatwoot_id = _text(raw.get("id"))
    if chatwoot_id and chatwoot_id != "0":
        found = (
            Conversation.objects.filter(external_id=chatwoot_id)
            .select_related("lead", "chip")
            .order_by("status", "-created_at")  # "closed" < "open": prefer open
            .last()
        )
        if found is not None:
            return found
    sender = _dict(_dict(raw.get("meta")).get("sender"))
    try:
        phone = to_e164(_text(sender.get("phone_number")))
    except ValueError:
        return None
    lead = Lead.objects.filter(phone=phone).first()
    if lead is None:
        return None
    conversation = (
        lead.conversations.filter(status=Conversation.Status.OPEN)
        .select_related("lead", "chip")
        .order_by("-last_message_at")
        .first()
    )
    if conversation is not None and chatwoot_id and chatwoot_id != "0":
        Conversation.objects.filter(pk=conversation.pk).update(external_id=chatwoot_id[:100])
        conversation.external_id = chatwoot_id[:100]
    return conversation


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    return str(value) if isinstance(value, str | int) else ""


def _strings(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []
