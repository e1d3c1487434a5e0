"""The sandbox chat: managers write as a lead to a sandbox chip and watch the agent answer.

The page posts what the "lead" types through the same intake a provider's
webhook uses (`webhook_receive` with a sandbox payload), so the message takes
the real path: stored event, worker, ingest, agent task, outbox. The page then
polls a small JSON endpoint for the conversation's messages. Only sandbox
chips can be picked, so nothing reaches a real phone.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from agent.models import AgentProfile
from agent.selectors import profile_for
from channels.models import Chip, Provider
from channels.services import webhook_receive
from conversations.ingest import conversation_get_or_open, lead_resolve
from conversations.models import Conversation, Message
from conversations.ordering import messages_in_lead_order
from core.phones import to_e164


class SandboxError(ValueError):
    """What the page shows when it cannot send (translated)."""


@dataclass(frozen=True)
class SandboxSent:
    event_id: int
    conversation_id: int


def sandbox_chips() -> list[Chip]:
    return list(Chip.objects.filter(provider=Provider.SANDBOX).select_related("agent_profile"))


def _pk(value: object) -> int | None:
    """A primary key from the page's JSON or query string; None for anything else."""
    if isinstance(value, bool):
        return None
    try:
        pk = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    # Beyond bigint the database would refuse the comparison itself.
    return pk if 0 < pk < 2**63 else None


def _sandbox_chip(chip_id: int | str) -> Chip:
    pk = _pk(chip_id)
    chip = Chip.objects.filter(pk=pk, provider=Provider.SANDBOX).first() if pk else None
    if chip is None:
        raise SandboxError(gettext("Choose a sandbox chip."))
    return chip


def _phone(raw: str) -> str:
    try:
        return to_e164(raw)
    except ValueError as exc:
        raise SandboxError(gettext("Invalid phone. Use, for example, +55 11 99999-0000.")) from exc


def sandbox_lead_writes(
    *,
    chip_id: int | str,
    phone: str,
    text: str,
    name: str = "",
    profile_id: int | str | None = None,
) -> SandboxSent:
    """Deliver `text` as if the lead wrote it on WhatsApp to the sandbox chip."""
    chip = _sandbox_chip(chip_id)
    phone = _phone(phone)
    text = text.strip()
    # PostgreSQL text refuses NUL; the name is stored as typed (the text goes through the intake).
    name = name.replace("\x00", "")
    if not text:
        raise SandboxError(gettext("Write a message."))
    with transaction.atomic():
        # Open the conversation first so a chosen profile applies to this very message.
        lead = lead_resolve(provider=chip.provider, phone=phone, addresses=[phone], name=name)
        conversation = conversation_get_or_open(lead=lead, chip=chip)
        if profile_id:
            pk = _pk(profile_id)
            profile = AgentProfile.objects.filter(pk=pk).first() if pk else None
            if profile is None:
                raise SandboxError(gettext("Profile not found."))
            if conversation.agent_profile_id != profile.pk:
                conversation.agent_profile = profile
                conversation.save(update_fields=["agent_profile", "updated_at"])
        body = json.dumps(
            {
                "type": "message",
                "id": f"sbx-chat-{uuid.uuid4().hex}",
                "from": phone,
                "name": name,
                "text": text,
                "from_me": False,
                "timestamp": int(timezone.now().timestamp()),
            }
        ).encode()
        headers = {"X-Sandbox-Token": chip.webhook_token} if chip.webhook_token else {}
        intake = webhook_receive(
            provider=chip.provider, chip_key=chip.webhook_key, headers=headers, body=body
        )
    return SandboxSent(event_id=intake.event_id, conversation_id=conversation.pk)


def sandbox_conversation_reset(*, chip_id: int | str, phone: str) -> int:
    """Close the lead's open conversation, so the next message starts over (flow included)."""
    chip = _sandbox_chip(chip_id)
    return Conversation.objects.filter(
        chip=chip, lead__phone=_phone(phone), status=Conversation.Status.OPEN
    ).update(status=Conversation.Status.CLOSED, closed_at=timezone.now(), updated_at=timezone.now())


_EXPLAINED = (Message.Status.CANCELLED, Message.Status.FAILED)


def sandbox_transcript(*, chip_id: int | str, phone: str) -> dict[str, Any]:
    """The lead's open conversation on the chip as the page shows it."""
    chip = _sandbox_chip(chip_id)
    conversation = (
        Conversation.objects.filter(chip=chip, lead__phone=_phone(phone))
        .select_related("agent_profile", "chip__agent_profile")
        .order_by("-created_at")
        .first()
    )
    if conversation is None:
        return {"conversation": None, "messages": []}
    messages = messages_in_lead_order(
        Message.objects.filter(conversation=conversation).order_by("created_at", "pk")[:500]
    )
    # The profile that really answers (services.profile_for), not a guess of it.
    profile = profile_for(conversation=conversation)
    return {
        "conversation": {
            "id": conversation.pk,
            "status": conversation.get_status_display(),
            "open": conversation.status == Conversation.Status.OPEN,
            "controlled_by": conversation.get_controlled_by_display(),
            "agent_paused": conversation.agent_paused,
            "profile": str(profile) if profile else "",
            "flow_step": conversation.flow_step,
            "flow_data": conversation.flow_data,
            "last_error": conversation.last_error,
        },
        "messages": [
            {
                "id": message.pk,
                "from_lead": message.direction == Message.Direction.INBOUND,
                "body": message.body,
                "purpose": message.get_purpose_display(),
                "status": message.get_status_display(),
                "state": message.status,
                # Why it was cancelled or failed: the chat shows the real fate of each message.
                "reason": message.last_error if message.status in _EXPLAINED else "",
                "at": timezone.localtime(message.created_at).strftime("%H:%M:%S"),
            }
            for message in messages
        ],
    }
