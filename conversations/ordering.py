"""The order the lead wrote in, where it differs from the order we stored in.

Two messages a lead sends a split second apart arrive as two webhooks, and two
workers may store them in either order: stored order (created_at, pk) is not
always the lead's. The answered/unanswered bookkeeping keeps stored order (it
only needs one total order); what the agent reads (the turn it answers, the
history the model sees) is put back in the lead's order: WhatsApp's own
timestamp, then the order the webhooks reached us.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from conversations.models import Message


def _lead_key(message: Message) -> tuple[datetime, int, datetime, int]:
    return (
        message.provider_timestamp or message.created_at,
        message.webhook_event_id or 0,
        message.created_at,
        message.pk or 0,
    )


def messages_in_lead_order(messages: Sequence[Message]) -> list[Message]:
    """`messages` (stored order, oldest first), each run of lead messages in written order.

    Only consecutive inbound messages are reordered: an answer between two
    of them fixes their order (the second was written after the answer was
    read), and outbound messages keep their place.
    """
    ordered: list[Message] = []
    run: list[Message] = []
    for message in messages:
        if message.direction == Message.Direction.INBOUND:
            run.append(message)
            continue
        ordered.extend(sorted(run, key=_lead_key))
        run = []
        ordered.append(message)
    ordered.extend(sorted(run, key=_lead_key))
    return ordered
