"""Handing a conversation to a human: the one entry the ingest and the agent call."""

from typing import Any

from conversations.models import Conversation, Handoff
from conversations.ownership import ACTIVE_HANDOFF, conversation_set_owner

ACTIVE = ACTIVE_HANDOFF


def handoff_open(
    *,
    conversation: Conversation,
    reason: str,
    note: str = "",
    actor: Any = None,
    actor_label: str = "agente",
) -> Handoff:
    """Give the conversation to a human: the agent stops, one active handoff, metric counted.

    Idempotent: an already active handoff is returned as it is.
    """
    label = Handoff.Reason(reason).label if reason in Handoff.Reason.values else reason
    conversation_set_owner(
        conversation=conversation,
        owner=Conversation.ControlledBy.HUMAN,
        reason=f"Handoff: {label}",
        actor=actor,
        actor_label=actor_label,
        handoff_reason=reason,
        handoff_note=note,
    )
    return Handoff.objects.get(conversation=conversation, status__in=ACTIVE)
