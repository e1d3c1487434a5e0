"""What an SDR does: the queue of handoffs, the transcript, the reply as a human."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.utils.translation import gettext as _

from conversations.models import Conversation, Handoff, Message
from conversations.ordering import messages_in_lead_order
from conversations.outbox import outbox_enqueue
from conversations.ownership import ACTIVE_HANDOFF, conversation_set_owner

Owner = Conversation.ControlledBy
TRANSCRIPT_LIMIT = 200


def handoff_queue(*, user: Any) -> QuerySet[Handoff]:
    """Active handoffs: nobody's first, then the user's own, oldest first within each."""
    return (
        Handoff.objects.filter(status__in=ACTIVE_HANDOFF)
        .select_related("conversation__lead", "conversation__chip", "assigned_to")
        .annotate(
            waiting=Case(
                When(status=Handoff.Status.OPEN, then=Value(0)),
                When(assigned_to_id=user.pk, then=Value(1)),
                default=Value(2),
                output_field=IntegerField(),
            )
        )
        .order_by("waiting", "created_at", "id")
    )


@dataclass(frozen=True)
class TranscriptLine:
    message: Message
    author: str
    side: str  # "lead" | "agent" | "human": where the bubble sits and its colour


def conversation_transcript(*, conversation: Conversation) -> list[TranscriptLine]:
    """The last messages, oldest first, each with who wrote it: the lead, the agent, an SDR."""
    messages = list(
        conversation.messages.select_related("sent_by").order_by("-created_at", "-id")[
            :TRANSCRIPT_LIMIT
        ]
    )
    lead_name = conversation.lead.name or _("Lead")
    lines = []
    for message in messages_in_lead_order(list(reversed(messages))):
        if message.direction == Message.Direction.INBOUND:
            lines.append(TranscriptLine(message, lead_name, "lead"))
        elif message.purpose == Message.Purpose.HUMAN:
            who = message.sent_by.get_username() if message.sent_by else _("from the phone")
            lines.append(TranscriptLine(message, _("SDR (%(who)s)") % {"who": who}, "human"))
        elif message.purpose == Message.Purpose.CAMPAIGN:
            lines.append(TranscriptLine(message, _("Campaign"), "agent"))
        else:
            lines.append(TranscriptLine(message, _("Agent"), "agent"))
    return lines


def conversation_reply_as_human(
    *,
    conversation: Conversation,
    user: Any,
    body: str,
    actor_label: str = "",
    handoff_reason: str = "",
) -> Message:
    """Send `body` to the lead as the human `user`: they own the conversation from now on.

    The owner changes first (in its own locked transaction), so a reply the
    agent queued a moment ago is cancelled by the outbox's re-check instead
    of leaving after the human's.
    """
    conversation_set_owner(
        conversation=conversation,
        owner=Owner.HUMAN,
        reason=_("SDR replied"),
        actor=user,
        actor_label=actor_label,
        handoff_reason=handoff_reason,
    )
    return outbox_enqueue(
        conversation=conversation,
        body=body,
        purpose=Message.Purpose.HUMAN,
        sent_by=user if getattr(user, "is_authenticated", False) else None,
    )
