"""Who applies a normalized webhook event: registered by a higher app.

`channels` parses a delivery into normalized events; what they change (leads,
conversations, message statuses, the chip's connection) belongs to
`conversations`, which `channels` must not import (DESIGN.md, "Layers").
ConversationsConfig.ready registers its `event_ingest` here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from channels.models import Chip, WebhookEvent
    from channels.providers.base import InboundEvent


class IngestOutcome(Protocol):
    """What applying one event did: `handled` False means it changed nothing useful."""

    handled: bool
    detail: str


class IngestHandler(Protocol):
    def __call__(
        self, *, chip: Chip, event: InboundEvent, webhook_event: WebhookEvent | None = None
    ) -> IngestOutcome: ...


_handler: IngestHandler | None = None


def ingest_handler_register(handler: IngestHandler) -> None:
    global _handler
    _handler = handler


def event_apply(
    *, chip: Chip, event: InboundEvent, webhook_event: WebhookEvent | None = None
) -> IngestOutcome:
    """Apply one normalized event through the registered handler."""
    if _handler is None:
        raise RuntimeError("no ingest handler registered: is 'conversations' installed?")
    return _handler(chip=chip, event=event, webhook_event=webhook_event)
