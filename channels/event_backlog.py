"""Whether intake still holds deliveries a chip received in some period.

The agent's burst window counts from the moment a lead's message reached
us, not from when intake stored it. When intake lags, a lead's next
message may have arrived inside the window and still wait in line as a
webhook event: the turn then waits for it instead of answering half a burst.
"""

from __future__ import annotations

from datetime import datetime

from channels.models import WebhookEvent


def webhook_events_unprocessed(
    *, chip_id: int, received_from: datetime, received_before: datetime
) -> bool:
    """True when the chip has deliveries received in [from, before) not processed yet."""
    # An index range scan (webhook_status_idx: status, received_at) over the
    # events still in line in that period, however large the table.
    return WebhookEvent.objects.filter(
        chip_id=chip_id,
        status=WebhookEvent.Status.RECEIVED,
        received_at__gte=received_from,
        received_at__lt=received_before,
    ).exists()
