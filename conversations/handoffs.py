"""Handing a conversation to a human: the one place a Handoff is opened."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from conversations.models import Conversation, Handoff
from core.metrics import counter_inc

ACTIVE = (Handoff.Status.OPEN, Handoff.Status.ACCEPTED)


def handoff_open(*, conversation: Conversation, reason: str, note: str = "") -> Handoff:
    """Give the conversation to a human: the agent stops, one active handoff, metric counted.

    Idempotent: an already active handoff is returned as it is.
    """
    Conversation.objects.filter(pk=conversation.pk).update(
        controlled_by=Conversation.ControlledBy.HUMAN, updated_at=timezone.now()
    )
    conversation.controlled_by = Conversation.ControlledBy.HUMAN
    existing = Handoff.objects.filter(conversation=conversation, status__in=ACTIVE).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            handoff = Handoff.objects.create(conversation=conversation, reason=reason, note=note)
    except IntegrityError:
        # uniq_active_handoff_per_conversation: someone opened one meanwhile.
        return Handoff.objects.get(conversation=conversation, status__in=ACTIVE)
    counter_inc("handoffs_total", {"reason": reason})
    return handoff
