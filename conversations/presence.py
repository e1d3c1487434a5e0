"""Typing presence: the lead sees "digitando…" while the agent works on their turn.

Best effort by design: a provider without the call, a slow one or an error
changes nothing for the reply (short timeout, every failure swallowed and
counted in `integration_requests_total{operation="typing"}`).
"""

from __future__ import annotations

import logging

import httpx
from django.conf import settings

from channels.http import USER_AGENT, tls_context
from channels.providers.base import get_adapter
from conversations.addressing import lead_address
from conversations.models import Message
from core.metrics import counter_inc

logger = logging.getLogger(__name__)


def presence_typing(*, message: Message, transport: httpx.BaseTransport | None = None) -> bool:
    """Show typing to the lead who wrote `message` (inbound); True if the provider took it."""
    chip = message.chip
    adapter = get_adapter(chip.provider)
    to = lead_address(message)
    if not to:
        return False
    timeout = settings.PRESENCE_TIMEOUT_SECONDS
    try:
        with httpx.Client(
            timeout=httpx.Timeout(timeout, connect=timeout),
            transport=transport,
            verify=tls_context(),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        ) as client:
            accepted = adapter.send_typing(
                chip, to=to, message_id=message.provider_message_id, client=client
            )
    except Exception:  # never let presence cost the lead their reply
        logger.warning("presence: typing on chip %s failed", chip.pk, exc_info=True)
        accepted = False
    if accepted is None:
        return False
    counter_inc(
        "integration_requests_total",
        {
            "integration": chip.provider,
            "operation": "typing",
            "outcome": "ok" if accepted else "error",
        },
    )
    return accepted
