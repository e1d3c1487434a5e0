"""Read-only queries behind the operations dashboard and the alert rules.

Each selector answers one tile with a few aggregate queries that stay on an
index on a database with millions of messages: time windows are bounded by
`created_at` (indexed) and counts never scan the whole table. Models of the
apps above `core` are reached through the app registry, by label, so `core`
imports none of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db.models import Count, F, Min, Q
from django.db.models.functions import Coalesce, TruncHour
from django.utils import timezone
from django.utils.translation import gettext

from core import selectors
from core.models import Alert

# Outbound outcomes, in the order the chart stacks them.
SEND_OUTCOMES = ("sent", "failed_provider", "failed_permanent", "failed_circuit_open", "cancelled")
FAILED_OUTCOMES = ("failed_provider", "failed_permanent", "failed_circuit_open")
DEAD_MESSAGE_STATUSES = ("failed", "cancelled")
# A message decided in a window was created at most this long before it
# (retries back off for at most OUTBOX_RETRY_MAX_SECONDS; campaigns queue
# ahead): the bound keeps window queries on the created_at index.
DECIDED_WITHIN = timedelta(days=1)


def _model(label: str) -> Any:
    return apps.get_model(label)


def _percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


# --- worker -----------------------------------------------------------------------------


def worker_status() -> dict[str, Any]:
    from core.health import check_broker

    age = selectors.heartbeat_age_seconds()
    # The agent's turns run on a cluster of their own: a dead agent cluster
    # silences every lead while the default one still beats.
    agent_age = selectors.heartbeat_age_seconds(cluster=settings.Q_AGENT_CLUSTER)
    agent_stale = selectors.heartbeat_stale(agent_age)
    return {
        "heartbeat_age_seconds": None if age is None else round(age),
        "agent_heartbeat_age_seconds": None if agent_age is None else round(agent_age),
        "agent_stale": agent_stale,
        "stale": selectors.heartbeat_stale(age) or agent_stale,
        "broker": check_broker(),
    }


# --- outbox -------------------------------------------------------------------------------


def outbound_decided(*, since: datetime) -> Any:
    """Outbound messages sent or given up on since `since` (index-bounded)."""
    Message = _model("conversations.Message")
    return Message.objects.filter(
        direction="out", created_at__gte=since - DECIDED_WITHIN, outcome__in=SEND_OUTCOMES
    ).filter(Q(sent_at__gte=since) | Q(failed_at__gte=since) | Q(updated_at__gte=since))


def sends_by_hour(*, hours: int = 24, now: datetime | None = None) -> dict[str, Any]:
    """Outbound outcomes per hour over the last `hours` hours, oldest hour first."""
    now = now or timezone.now()
    current = now.replace(minute=0, second=0, microsecond=0)
    buckets = [current - timedelta(hours=n) for n in range(hours - 1, -1, -1)]
    since = buckets[0]
    rows = (
        outbound_decided(since=since)
        .annotate(hour=TruncHour(Coalesce("sent_at", "failed_at", "updated_at")))
        .filter(hour__gte=since)
        .values("hour", "outcome")
        .annotate(n=Count("id"))
    )
    series: dict[str, list[int]] = {outcome: [0] * hours for outcome in SEND_OUTCOMES}
    index = {bucket: i for i, bucket in enumerate(buckets)}
    for row in rows:
        position = index.get(row["hour"])
        if position is not None:
            series[row["outcome"]][position] += row["n"]
    return {"hours": buckets, "series": series}


def send_error_rate(*, minutes: int, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    since = now - timedelta(minutes=minutes)
    counts = (
        outbound_decided(since=since)
        .filter(Q(sent_at__gte=since) | Q(failed_at__gte=since))
        .aggregate(total=Count("id"), failed=Count("id", filter=Q(outcome__in=FAILED_OUTCOMES)))
    )
    total = counts["total"]
    return {
        "total": total,
        "failed": counts["failed"],
        "rate": counts["failed"] / total if total else None,
    }


def outbox_status() -> dict[str, Any]:
    Message = _model("conversations.Message")
    backlog = selectors.outbox_backlog()
    since = timezone.now() - timedelta(hours=24)
    failed_24h = Message.objects.filter(
        direction="out",
        status="failed",
        created_at__gte=since - DECIDED_WITHIN,
        failed_at__gte=since,
    ).count()
    return {**backlog, "failed_24h": failed_24h}


# --- chips ---------------------------------------------------------------------------------


def chips_status(*, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every chip with its connection, circuit, quality, today's sends against its cap."""
    from channels.pacing import chip_daily_cap, chip_local_midnight

    Chip = _model("channels.Chip")
    DeliveryAttempt = _model("conversations.DeliveryAttempt")
    now = now or timezone.now()
    chips = list(Chip.objects.order_by("name"))
    if not chips:
        return []
    midnights = {chip.pk: chip_local_midnight(chip, now=now) for chip in chips}
    by_midnight: dict[datetime, list[int]] = {}
    for pk, midnight in midnights.items():
        by_midnight.setdefault(midnight, []).append(pk)
    # Accepted sends since each chip's midnight (one query per time zone in
    # use), on the (chip, started_at) index: a day of sends, bounded by the
    # chips' caps. The same count the pacing's cap uses (chip_sent_today).
    sent_today: dict[int, int] = {}
    for midnight, pks in by_midnight.items():
        rows = (
            DeliveryAttempt.objects.filter(
                chip_id__in=pks, started_at__gte=midnight, outcome="sent"
            )
            .values("chip_id")
            .annotate(n=Count("id"))
            .order_by()
        )
        sent_today.update({row["chip_id"]: row["n"] for row in rows})
    result = []
    for chip in chips:
        today = now.astimezone(midnights[chip.pk].tzinfo).date()
        cap = chip_daily_cap(chip, today=today)
        blocked = not chip.can_prospect and not chip.can_follow_up
        result.append(
            {
                "chip": chip,
                "status": chip.status,
                "status_label": chip.get_status_display(),
                "circuit": chip.circuit_state,
                "circuit_label": chip.get_circuit_state_display(),
                "quality": chip.quality_rating or "—",
                "sent_today": sent_today.get(chip.pk, 0),
                "cap": cap,
                "blocked": blocked,
                "last_error": chip.last_error,
                "last_error_at": chip.last_error_at,
                "problem": chip_problem(chip),
            }
        )
    return result


CHIP_DOWN_STATUSES = ("disconnected", "restricted", "banned")


def chip_problem(chip: Any) -> str:
    """Why a chip needs attention ('' when it does not): the chip alert's condition."""
    if chip.status in CHIP_DOWN_STATUSES:
        return str(chip.get_status_display()).lower()
    if chip.circuit_state == "open":
        return gettext("with its circuit open")
    return ""


def chip_state_counts() -> dict[tuple[str, str], int]:
    Chip = _model("channels.Chip")
    rows = Chip.objects.values_list("status", "circuit_state").annotate(n=Count("id")).order_by()
    return {(status, circuit): n for status, circuit, n in rows}


def chips_with_problems() -> list[tuple[Any, str]]:
    Chip = _model("channels.Chip")
    chips = Chip.objects.filter(Q(status__in=CHIP_DOWN_STATUSES) | Q(circuit_state="open"))
    return [(chip, chip_problem(chip)) for chip in chips.order_by("pk")]


# --- leads waiting, agent, handoffs ---------------------------------------------------------


def awaiting_reply_conversations() -> Any:
    """Open agent conversations whose lead wrote after the last thing sent to them."""
    Conversation = _model("conversations.Conversation")
    return Conversation.objects.filter(
        status="open",
        controlled_by="agent",
        agent_paused=False,
        last_inbound_at__isnull=False,
        lead__opted_out=False,
    ).filter(Q(last_outbound_at__isnull=True) | Q(last_inbound_at__gt=F("last_outbound_at")))


def awaiting_reply(*, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    stats = awaiting_reply_conversations().aggregate(n=Count("id"), oldest=Min("last_inbound_at"))
    oldest = stats["oldest"]
    return {
        "conversations": stats["n"],
        "oldest_seconds": round((now - oldest).total_seconds()) if oldest else None,
    }


def agent_performance(*, minutes: int, now: datetime | None = None) -> dict[str, Any]:
    """Lead-perceived response time (reply created - lead message created) and run errors."""
    Message = _model("conversations.Message")
    AgentRun = _model("agent.AgentRun")
    now = now or timezone.now()
    since = now - timedelta(minutes=minutes)
    waits = sorted(
        (created - asked).total_seconds()
        for created, asked in Message.objects.filter(
            direction="out", purpose="reply", created_at__gte=since, reply_to__isnull=False
        )
        .order_by("-created_at")
        .values_list("created_at", "reply_to__created_at")[:10_000]
    )
    runs = AgentRun.objects.filter(started_at__gte=since).aggregate(
        total=Count("id"), errors=Count("id", filter=Q(outcome="error"))
    )
    return {
        "minutes": minutes,
        "replies": len(waits),
        "p50_seconds": _percentile(waits, 0.50),
        "p95_seconds": _percentile(waits, 0.95),
        "runs": runs["total"],
        "errors": runs["errors"],
        "error_rate": runs["errors"] / runs["total"] if runs["total"] else None,
    }


def handoffs_waiting(*, now: datetime | None = None) -> dict[str, Any]:
    Handoff = _model("conversations.Handoff")
    now = now or timezone.now()
    stats = Handoff.objects.filter(status="open").aggregate(n=Count("id"), oldest=Min("created_at"))
    oldest = stats["oldest"]
    return {
        "open": stats["n"],
        "oldest_seconds": round((now - oldest).total_seconds()) if oldest else None,
    }


def handoff_rate(*, minutes: int, now: datetime | None = None) -> dict[str, Any]:
    """Handoffs opened in the window over conversations in which a lead wrote."""
    Handoff = _model("conversations.Handoff")
    Message = _model("conversations.Message")
    now = now or timezone.now()
    since = now - timedelta(minutes=minutes)
    handoffs = Handoff.objects.filter(created_at__gte=since).count()
    conversations = (
        Message.objects.filter(direction="in", created_at__gte=since)
        .values("conversation_id")
        .distinct()
        .count()
    )
    return {
        "handoffs": handoffs,
        "conversations": conversations,
        "rate": handoffs / conversations if conversations else None,
    }


def replies_in_window(
    *, minutes: int, now: datetime | None = None, grace_seconds: int = 0
) -> dict[str, int]:
    """Lead messages (older than the grace) and answers (agent or human) created in the window."""
    Message = _model("conversations.Message")
    now = now or timezone.now()
    settled = now - timedelta(seconds=grace_seconds)
    counts = Message.objects.filter(created_at__gte=now - timedelta(minutes=minutes)).aggregate(
        inbound=Count("id", filter=Q(direction="in", created_at__lte=settled)),
        answers=Count("id", filter=Q(direction="out", purpose__in=["reply", "human"])),
    )
    return {"inbound": counts["inbound"], "answers": counts["answers"]}


# --- campaigns ---------------------------------------------------------------------------------


def campaigns_running(*, limit: int = 10) -> list[dict[str, Any]]:
    """Running and paused campaigns with their recipients' progress."""
    Campaign = _model("campaigns.Campaign")
    campaigns = (
        Campaign.objects.filter(status__in=["running", "paused"])
        .annotate(
            total=Count("recipients"),
            sent=Count("recipients", filter=Q(recipients__status="sent")),
            failed=Count("recipients", filter=Q(recipients__status="failed")),
            done=Count(
                "recipients",
                filter=Q(recipients__status__in=["sent", "failed", "skipped", "cancelled"]),
            ),
        )
        .order_by("-status", "-started_at")[:limit]
    )
    return [
        {
            "campaign": campaign,
            "status_label": campaign.get_status_display(),
            "total": campaign.total,
            "sent": campaign.sent,
            "failed": campaign.failed,
            "percent": round(100 * campaign.done / campaign.total) if campaign.total else 0,
        }
        for campaign in campaigns
    ]


# --- alerts --------------------------------------------------------------------------------------


def alerts_active(*, limit: int = 20) -> list[Alert]:
    return list(Alert.objects.filter(status__in=Alert.ACTIVE).order_by("-opened_at")[:limit])


@dataclass
class DashboardSnapshot:
    now: datetime
    worker: dict[str, Any]
    outbox: dict[str, Any]
    chips: list[dict[str, Any]]
    sends: dict[str, Any]
    awaiting: dict[str, Any]
    agent: dict[str, Any]
    handoffs: dict[str, Any]
    campaigns: list[dict[str, Any]]
    alerts: list[Alert] = field(default_factory=list)
    chatwoot: dict[str, Any] = field(default_factory=dict)


def dashboard_snapshot() -> DashboardSnapshot:
    now = timezone.now()
    return DashboardSnapshot(
        now=now,
        worker=worker_status(),
        outbox=outbox_status(),
        chips=chips_status(now=now),
        sends=sends_by_hour(now=now),
        awaiting=awaiting_reply(now=now),
        agent=agent_performance(minutes=settings.ALERT_AGENT_WINDOW_MINUTES, now=now),
        handoffs=handoffs_waiting(now=now),
        campaigns=campaigns_running(),
        alerts=alerts_active(),
        chatwoot=dict(selectors.chatwoot_backlog()),
    )
