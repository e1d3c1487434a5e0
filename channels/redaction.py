"""Credentials never stored with a webhook delivery.

Evolution puts the instance `apikey` in every body; providers send their
tokens as headers. `WebhookEvent.save` calls `webhook_event_redact`, so no
path that stores an event (intake, rejects, the admin, a future importer) can
forget it; the admin also redacts on display, for rows stored before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.redaction import mapping_redact, text_redact

if TYPE_CHECKING:
    from channels.models import WebhookEvent

REDACTED_FIELDS = ("payload", "headers", "raw_body")


def webhook_event_redact(event: WebhookEvent) -> None:
    """Replace every credential in the event's payload, headers and raw body, in place."""
    event.payload = mapping_redact(event.payload)
    event.headers = mapping_redact(event.headers)
    if event.raw_body:
        event.raw_body = text_redact(event.raw_body)
