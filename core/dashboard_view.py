"""What the dashboard template shows: the snapshot, its chart and the links behind each tile."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext as _

from core.charts import stacked_bars
from core.dashboard import dashboard_snapshot

# Chart colours per outbound outcome: green sent, reds/orange failures, grey cancelled.
OUTCOME_SERIES = (
    ("sent", "#2e7d32"),
    ("failed_provider", "#c62828"),
    ("failed_permanent", "#6a1b9a"),
    ("failed_circuit_open", "#ef6c00"),
    ("cancelled", "#9e9e9e"),
)


def changelist(model: str, **filters: str) -> str:
    """The admin changelist URL of `app_label.model`, filtered."""
    app_label, model_name = model.split(".")
    url = reverse(f"admin:{app_label}_{model_name}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def duration(seconds: float | None) -> str:
    """'45 s', '12 min', '3 h 5 min', '2 d' for a tile; '—' when there is nothing."""
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} d"


def percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{fraction * 100:.1f}%"


def dashboard_context(request: HttpRequest) -> dict[str, Any]:
    snapshot = dashboard_snapshot()
    outcome_label = {
        "sent": _("sent"),
        "failed_provider": _("provider failure"),
        "failed_permanent": _("permanent failure"),
        "failed_circuit_open": _("circuit open"),
        "cancelled": _("cancelled"),
    }
    series = [
        (outcome_label[outcome], colour, snapshot.sends["series"][outcome])
        for outcome, colour in OUTCOME_SERIES
    ]
    sends_total = {outcome: sum(values) for outcome, values in snapshot.sends["series"].items()}
    agent = snapshot.agent
    return {
        "snapshot": snapshot,
        "sends_chart": stacked_bars(
            labels=snapshot.sends["hours"],
            series=series,
            title=_("Sends per hour and outcome (last 24 h)"),
        ),
        "sends_total": sends_total,
        "sends_failed": sum(
            n for outcome, n in sends_total.items() if outcome.startswith("failed")
        ),
        "worker_age": duration(snapshot.worker["heartbeat_age_seconds"]),
        "agent_worker_age": duration(snapshot.worker["agent_heartbeat_age_seconds"]),
        "outbox_oldest": duration(snapshot.outbox["oldest_pending_seconds"]),
        "awaiting_oldest": duration(snapshot.awaiting["oldest_seconds"]),
        "handoffs_oldest": duration(snapshot.handoffs["oldest_seconds"]),
        "chatwoot_oldest": duration(snapshot.chatwoot["oldest_pending_seconds"]),
        "chatwoot_late": (snapshot.chatwoot["oldest_pending_seconds"] or 0)
        > settings.CHATWOOT_MIRROR_BACKLOG_WARN_SECONDS,
        "agent_p50": duration(agent["p50_seconds"]),
        "agent_p95": duration(agent["p95_seconds"]),
        "agent_p95_slow": (agent["p95_seconds"] or 0) > settings.ALERT_AGENT_P95_SECONDS,
        "agent_error_rate": percent(agent["error_rate"]),
        "links": {
            "worker": changelist("core.workerheartbeat"),
            "outbox": changelist(
                "conversations.message", direction__exact="out", status__in="queued,sending"
            ),
            "failed": changelist(
                "conversations.message", direction__exact="out", status__exact="failed"
            ),
            "sends": changelist("conversations.message", direction__exact="out"),
            "awaiting": changelist("conversations.message", aguardando="sim"),
            "agent_errors": changelist("agent.agentrun", outcome__exact="error"),
            "handoffs": changelist("conversations.handoff", status__exact="open"),
            # Refused writes are the ones ops can act on (the "Send to Chatwoot
            # again" action on that list); without any, the backlog.
            "chatwoot": changelist(
                "conversations.message",
                chatwoot="falhou" if snapshot.chatwoot["failed_24h"] else "pendente",
            ),
            "campaigns": changelist("campaigns.campaign", status__exact="running"),
            "alerts": changelist("core.alert", status__in="open,acknowledged"),
            "chips": changelist("channels.chip"),
        },
        "refresh_seconds": settings.DASHBOARD_REFRESH_SECONDS,
    }
