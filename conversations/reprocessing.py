"""The seam behind the admin's "Reprocess" actions.

Answering a lead again is the agent's job, and `agent` sits above
`conversations`: the agent registers the function that queues it (in its
AppConfig.ready) instead of this app importing the agent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

from conversations.models import Conversation, Message


@dataclass
class ReprocessRequest:
    """What a "Reprocess" click queued, and what it left alone."""

    queued: int = 0
    answered: int = 0
    not_inbound: int = 0


Reprocessor = Callable[..., ReprocessRequest]
_reprocessors: list[Reprocessor] = []


def reprocessor_register(reprocessor: Reprocessor) -> None:
    if reprocessor not in _reprocessors:
        _reprocessors.append(reprocessor)


def messages_reprocess(*, messages: Sequence[Message], force: bool = False) -> ReprocessRequest:
    """Queue the registered reprocessor for these messages (`force`: even when answered)."""
    if not _reprocessors:
        raise ImproperlyConfigured("no reprocessor registered (is the agent app installed?)")
    return _reprocessors[-1](messages=messages, force=force)


def conversation_last_inbound(*, conversation: Conversation) -> Message | None:
    return (
        Message.objects.filter(conversation=conversation, direction=Message.Direction.INBOUND)
        .order_by("-created_at", "-pk")
        .first()
    )
