"""Alerts for the ops: an ERROR log line always, and Slack when configured.

Called after commit (the alert describes something that did happen); a Slack
outage never breaks the caller.
"""

from __future__ import annotations

import logging

import httpx
from django.conf import settings

from core.metrics import counter_inc

logger = logging.getLogger("sdr.alerts")


def alert_raise(*, title: str, text: str) -> bool:
    """Log at ERROR and post to SLACK_WEBHOOK_URL if set. True when Slack took it."""
    logger.error("ALERT %s: %s", title, text)
    url = settings.SLACK_WEBHOOK_URL
    if not url:
        return False
    try:
        response = httpx.post(
            url, json={"text": f":rotating_light: *{title}*\n{text}"}, timeout=httpx.Timeout(5.0)
        )
        ok = response.status_code < 300
    except httpx.HTTPError as exc:
        logger.warning("alert: Slack webhook failed: %s", exc)
        ok = False
    if not ok:
        logger.warning("alert: Slack webhook did not accept the alert")
    counter_inc(
        "integration_requests_total",
        {"integration": "slack", "operation": "alert", "outcome": "ok" if ok else "error"},
    )
    return ok
