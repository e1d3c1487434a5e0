"""Whether intake still holds deliveries a chip received in some period.

The agent's burst window counts from the moment a lead's message reached
us, not from when intake stored it. When intake lags, a lead's next
message may have arrived inside the window and still wait in line as a
webhook event: the turn then waits for it instead of answering half a burst.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import reduce
from operator import or_

from django.db.models import Q, TextField
from django.db.models.functions import Cast

from channels.models import WebhookEvent


def webhook_events_unprocessed(
    *,
    chip_id: int,
    received_from: datetime,
    received_before: datetime,
    naming: Sequence[str] = (),
) -> bool:
    """True when the chip has deliveries received in [from, before) not processed yet.

    With `naming`, only deliveries whose payload contains one of those
    strings (a lead's phone digits or provider ids) count: which lead a
    delivery is from is known only once intake has parsed it. A textual
    match may count a delivery that merely mentions the lead, or miss one
    that names them some other way; the caller must be one for which either
    costs little (planning ahead: a plan held back, or made again).
    """
    # An index range scan (webhook_status_idx: status, received_at) over the
    # events still in line in that period, however large the table.
    events = WebhookEvent.objects.filter(
        chip_id=chip_id,
        status=WebhookEvent.Status.RECEIVED,
        received_at__gte=received_from,
        received_at__lt=received_before,
    )
    if naming:
        events = events.alias(text=Cast("payload", TextField())).filter(
            reduce(or_, (Q(text__contains=name) for name in naming))
        )
    return events.exists()
