"""Credentials never stored with a webhook delivery.

Evolution puts the instance `apikey` in every body; providers send their
tokens as headers. `WebhookEvent.save` calls `webhook_event_redact`, so no
path that stores an event (intake, rejects, the admin, a future importer) can
forget it; the admin also redacts on display, for rows stored before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.redaction import mapping_redact, text_redact

if TYPE_CHECKING:
    from channels.models import WebhookEvent

REDACTED_FIELDS = ("payload", "headers", "raw_body")


def webhook_values_redact(values: dict[str, Any]) -> None:
    """Replace every credential in an event's field values, in place (intake's insert)."""
    for name in ("payload", "headers"):
        if name in values:
            values[name] = mapping_redact(values[name])
    if values.get("raw_body"):
        values["raw_body"] = text_redact(values["raw_body"])


def webhook_event_redact(event: WebhookEvent) -> None:
    """Replace every credential in the event's payload, headers and raw body, in place."""
    values = {name: getattr(event, name) for name in REDACTED_FIELDS}
    webhook_values_redact(values)
    for name, value in values.items():
        setattr(event, name, value)
