"""Alerts for the ops: evaluated rules with a lifecycle, an ERROR log line and Slack.

`alerts_evaluate` runs the rules (every minute in the worker; the heartbeat
rule also from the web process, since a dead worker cannot report itself),
opens one `Alert` per condition and subject that fires, and resolves the
active ones that stopped firing. Slack hears of each opening and each
resolution once, after commit; a Slack outage never breaks the caller.

`alert_raise` is the older one-shot alert (a chip quarantined): a log line
and a Slack message, no stored state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo

import httpx
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from core import dashboard, selectors
from core.metrics import counter_inc
from core.models import Alert

logger = logging.getLogger("sdr.alerts")


def _slack_post(text: str, *, operation: str) -> bool:
    """Post to SLACK_WEBHOOK_URL if set. True when Slack took it."""
    url = settings.SLACK_WEBHOOK_URL
    if not url:
        return False
    try:
        response = httpx.post(url, json={"text": text}, timeout=httpx.Timeout(5.0))
        ok = response.status_code < 300
    except httpx.HTTPError as exc:
        # The exception's text may carry the URL, which is itself the credential.
        logger.warning("alert: Slack webhook failed: %s", type(exc).__name__)
        ok = False
    if not ok:
        logger.warning("alert: Slack webhook did not accept the alert")
    counter_inc(
        "integration_requests_total",
        {"integration": "slack", "operation": operation, "outcome": "ok" if ok else "error"},
    )
    return ok


# Other notifiers (conversations.handoff_notify) post through the same client.
slack_post = _slack_post


def alert_raise(*, title: str, text: str) -> bool:
    """Log at ERROR and post to SLACK_WEBHOOK_URL if set. True when Slack took it."""
    logger.error("ALERT %s: %s", title, text)
    return _slack_post(f":rotating_light: *{title}*\n{text}", operation="alert")


# --- rules --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Firing:
    """A condition that holds now, about one subject ('' = the whole platform)."""

    condition: str
    title: str
    detail: str
    value: float | None = None
    subject: str = ""


def _rule_outbox_backlog(now: datetime) -> list[Firing]:
    backlog = selectors.outbox_backlog()
    pending, oldest = backlog["pending_messages"], backlog["oldest_pending_seconds"] or 0
    if (
        pending > settings.ALERT_OUTBOX_BACKLOG_COUNT
        and oldest >= settings.ALERT_OUTBOX_BACKLOG_MINUTES * 60
    ):
        return [
            Firing(
                Alert.Condition.OUTBOX_BACKLOG,
                gettext("Send queue with %(count)d messages") % {"count": pending},
                gettext(
                    "%(count)d messages in the queue; the oldest has waited %(age)d min "
                    "(threshold: %(limit)d for %(minutes)d min)."
                )
                % {
                    "count": pending,
                    "age": round(oldest / 60),
                    "limit": settings.ALERT_OUTBOX_BACKLOG_COUNT,
                    "minutes": settings.ALERT_OUTBOX_BACKLOG_MINUTES,
                },
                pending,
            )
        ]
    return []


def _rule_worker_down(now: datetime) -> list[Firing]:
    default = _cluster_down(
        cluster=None,
        title=gettext("Worker down"),
        never_ran=gettext("No worker has written a heartbeat: the qcluster never ran."),
        stale=gettext(
            "Last worker heartbeat %(age)d s ago (threshold: %(limit)d s). "
            "Nothing is sent or answered."
        ),
        subject="",
    )
    # The agent's own cluster: one alert of its own (the subject), since the
    # default cluster beating says nothing about it.
    agent = _cluster_down(
        cluster=settings.Q_AGENT_CLUSTER,
        title=gettext("Agent cluster down"),
        never_ran=gettext(
            "No agent worker has written a heartbeat: the agent's qcluster never ran."
        ),
        stale=gettext(
            "Last heartbeat of the agent's cluster %(age)d s ago (threshold: %(limit)d s). "
            "Leads get no answer."
        ),
        subject=f"cluster:{settings.Q_AGENT_CLUSTER}",
        grace_on_new_installation=True,
    )
    return [firing for firing in (default, agent) if firing is not None]


def _cluster_down(
    *,
    cluster: str | None,
    title: str,
    never_ran: str,
    stale: str,
    subject: str,
    grace_on_new_installation: bool = False,
) -> Firing | None:
    """A firing when `cluster` never beat or beat too long ago.

    With `grace_on_new_installation`, a cluster that never beat is not
    reported on a new installation (selectors.installation_is_new): the
    agent's scheduler makes its first pass about 30 s after it starts, often
    after the default cluster's first evaluation.
    """
    age = selectors.heartbeat_age_seconds(cluster=cluster)
    if not selectors.heartbeat_stale(age):
        return None
    if age is None:
        if grace_on_new_installation and selectors.installation_is_new():
            return None
        detail = never_ran
    else:
        detail = stale % {"age": round(age), "limit": settings.HEARTBEAT_STALE_SECONDS}
    return Firing(Alert.Condition.WORKER_DOWN, title, detail, age, subject=subject)


def _rule_error_rate(now: datetime) -> list[Firing]:
    minutes = settings.ALERT_ERROR_RATE_MINUTES
    threshold = settings.ALERT_ERROR_RATE
    firing = []
    sends = dashboard.send_error_rate(minutes=minutes, now=now)
    if sends["total"] >= settings.ALERT_ERROR_RATE_MIN_EVENTS and sends["rate"] > threshold:
        firing.append(
            Firing(
                Alert.Condition.ERROR_RATE,
                gettext("Send error rate at %(rate)s") % {"rate": f"{sends['rate']:.0%}"},
                gettext(
                    "%(failed)d of %(total)d sends failed in the last %(minutes)d min "
                    "(threshold: %(threshold)s)."
                )
                % {
                    "failed": sends["failed"],
                    "total": sends["total"],
                    "minutes": minutes,
                    "threshold": f"{threshold:.0%}",
                },
                sends["rate"],
                subject="envios",
            )
        )
    agent = dashboard.agent_performance(minutes=minutes, now=now)
    if agent["runs"] >= settings.ALERT_ERROR_RATE_MIN_EVENTS and agent["error_rate"] > threshold:
        firing.append(
            Firing(
                Alert.Condition.ERROR_RATE,
                gettext("Agent error rate at %(rate)s") % {"rate": f"{agent['error_rate']:.0%}"},
                gettext(
                    "%(errors)d of %(runs)d agent runs failed in the last %(minutes)d min "
                    "(threshold: %(threshold)s)."
                )
                % {
                    "errors": agent["errors"],
                    "runs": agent["runs"],
                    "minutes": minutes,
                    "threshold": f"{threshold:.0%}",
                },
                agent["error_rate"],
                subject="agente",
            )
        )
    return firing


def business_hours(now: datetime) -> bool:
    """Whether `now` falls in ALERT_BUSINESS_HOURS on ALERT_BUSINESS_DAYS (TIME_ZONE)."""
    local = now.astimezone(ZoneInfo(settings.TIME_ZONE))
    start_text, end_text = settings.ALERT_BUSINESS_HOURS.split("-")
    start, end = time.fromisoformat(start_text.strip()), time.fromisoformat(end_text.strip())
    return local.weekday() in settings.ALERT_BUSINESS_DAYS and start <= local.time() < end


def _rule_no_responses(now: datetime) -> list[Firing]:
    if not business_hours(now):
        return []
    minutes = settings.ALERT_NO_RESPONSES_MINUTES
    counts = dashboard.replies_in_window(
        minutes=minutes, now=now, grace_seconds=settings.AGENT_RECOVERY_MIN_AGE_SECONDS
    )
    if counts["inbound"] and not counts["answers"]:
        return [
            Firing(
                Alert.Condition.NO_RESPONSES,
                gettext("No responses in %(minutes)d min") % {"minutes": minutes},
                gettext(
                    "%(count)d messages from leads and no response (agent or human) "
                    "in the last %(minutes)d min, during business hours."
                )
                % {"count": counts["inbound"], "minutes": minutes},
                counts["inbound"],
            )
        ]
    return []


def _rule_handoff_rate(now: datetime) -> list[Firing]:
    minutes = settings.ALERT_HANDOFF_MINUTES
    stats = dashboard.handoff_rate(minutes=minutes, now=now)
    if (
        stats["conversations"] >= settings.ALERT_HANDOFF_MIN_CONVERSATIONS
        and stats["rate"] > settings.ALERT_HANDOFF_RATE
    ):
        return [
            Firing(
                Alert.Condition.HANDOFF_RATE,
                gettext("Handoff rate at %(rate)s") % {"rate": f"{stats['rate']:.0%}"},
                gettext(
                    "%(handoffs)d handoffs in %(conversations)d conversations in the last "
                    "%(minutes)d min (threshold: %(threshold)s)."
                )
                % {
                    "handoffs": stats["handoffs"],
                    "conversations": stats["conversations"],
                    "minutes": minutes,
                    "threshold": f"{settings.ALERT_HANDOFF_RATE:.0%}",
                },
                stats["rate"],
            )
        ]
    return []


def _rule_agent_slow(now: datetime) -> list[Firing]:
    minutes = settings.ALERT_AGENT_WINDOW_MINUTES
    stats = dashboard.agent_performance(minutes=minutes, now=now)
    p95 = stats["p95_seconds"]
    if (
        stats["replies"] >= settings.ALERT_AGENT_MIN_REPLIES
        and p95 > settings.ALERT_AGENT_P95_SECONDS
    ):
        return [
            Firing(
                Alert.Condition.AGENT_SLOW,
                gettext("Slow agent: p95 of %(p95)s s") % {"p95": f"{p95:.0f}"},
                gettext(
                    "p95 response time over %(replies)d replies in the last %(minutes)d min: "
                    "%(p95)s s (threshold: %(threshold)s s)."
                )
                % {
                    "replies": stats["replies"],
                    "minutes": minutes,
                    "p95": f"{p95:.1f}",
                    "threshold": f"{settings.ALERT_AGENT_P95_SECONDS:.0f}",
                },
                p95,
            )
        ]
    return []


def _rule_chip_down(now: datetime) -> list[Firing]:
    return [
        Firing(
            Alert.Condition.CHIP_DOWN,
            f"Chip {chip.name}: {problem}",
            gettext("Chip %(chip)s is %(problem)s. Last error: %(error)s")
            % {"chip": chip, "problem": problem, "error": chip.last_error or "—"},
            subject=f"chip:{chip.pk}",
        )
        for chip, problem in dashboard.chips_with_problems()
    ]


RULES: dict[str, Callable[[datetime], list[Firing]]] = {
    Alert.Condition.OUTBOX_BACKLOG: _rule_outbox_backlog,
    Alert.Condition.WORKER_DOWN: _rule_worker_down,
    Alert.Condition.ERROR_RATE: _rule_error_rate,
    Alert.Condition.NO_RESPONSES: _rule_no_responses,
    Alert.Condition.HANDOFF_RATE: _rule_handoff_rate,
    Alert.Condition.AGENT_SLOW: _rule_agent_slow,
    Alert.Condition.CHIP_DOWN: _rule_chip_down,
}


# --- lifecycle -----------------------------------------------------------------------------


@dataclass
class EvaluationReport:
    opened: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    still_active: int = 0

    def __str__(self) -> str:
        return gettext("%(opened)d opened, %(resolved)d resolved, %(active)d still active") % {
            "opened": len(self.opened),
            "resolved": len(self.resolved),
            "active": self.still_active,
        }


def alerts_evaluate(
    *, conditions: Iterable[str] | None = None, now: datetime | None = None
) -> EvaluationReport:
    """Run the rules; open what fires and is not active, resolve what stopped firing."""
    now = now or timezone.now()
    names = list(RULES) if conditions is None else list(conditions)
    firing: dict[tuple[str, str], Firing] = {}
    for name in names:
        for fire in RULES[name](now):
            firing[(fire.condition, fire.subject)] = fire
    report = EvaluationReport()
    active = {
        (alert.condition, alert.subject): alert
        for alert in Alert.objects.filter(status__in=Alert.ACTIVE, condition__in=names)
    }
    for key, fire in firing.items():
        if key in active:
            Alert.objects.filter(pk=active[key].pk).update(
                last_seen_at=now, value=fire.value, detail=fire.detail
            )
            report.still_active += 1
            continue
        alert = _alert_open(fire, now=now)
        if alert is not None:
            report.opened.append(alert)
    for key, alert in active.items():
        if key not in firing and _alert_close(alert, now=now, user=None):
            report.resolved.append(alert)
    return report


def _alert_open(fire: Firing, *, now: datetime) -> Alert | None:
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                condition=fire.condition,
                subject=fire.subject,
                title=fire.title,
                detail=fire.detail,
                value=fire.value,
                opened_at=now,
                last_seen_at=now,
            )
    except IntegrityError:
        # Another evaluator (the web process, another worker) opened it first.
        return None
    logger.error("ALERT opened %s: %s", fire.title, fire.detail)
    headline = gettext("Alert: %(title)s") % {"title": fire.title}
    transaction.on_commit(
        lambda: _slack_post(f":rotating_light: *{headline}*\n{fire.detail}", operation="alert_open")
    )
    return alert


def _alert_close(alert: Alert, *, now: datetime, user: AbstractBaseUser | None) -> bool:
    """Resolve one active alert; False when someone else resolved it first."""
    closed = Alert.objects.filter(pk=alert.pk, status__in=Alert.ACTIVE).update(
        status=Alert.Status.RESOLVED, resolved_at=now, resolved_by=user
    )
    if not closed:
        return False
    alert.status, alert.resolved_at = Alert.Status.RESOLVED, now
    who = f" by {user.get_username()}" if user is not None else ""
    logger.warning("ALERT resolved%s: %s", who, alert.title)
    if user is None:
        headline = gettext("Resolved: %(title)s") % {"title": alert.title}
    else:
        headline = gettext("Resolved by %(user)s: %(title)s") % {
            "user": user.get_username(),
            "title": alert.title,
        }
    transaction.on_commit(
        lambda: _slack_post(f":white_check_mark: *{headline}*", operation="alert_resolve")
    )
    return True


def alerts_acknowledge(*, alerts: Iterable[Alert], user: AbstractBaseUser) -> list[Alert]:
    """Someone is on it: open alerts become acknowledged (they still resolve by themselves)."""
    pks = [alert.pk for alert in alerts if alert.status == Alert.Status.OPEN]
    changed = list(Alert.objects.filter(pk__in=pks, status=Alert.Status.OPEN))
    Alert.objects.filter(pk__in=[a.pk for a in changed]).update(
        status=Alert.Status.ACKNOWLEDGED, acknowledged_at=timezone.now(), acknowledged_by=user
    )
    return changed


def alerts_resolve(*, alerts: Iterable[Alert], user: AbstractBaseUser) -> list[Alert]:
    """Close active alerts by hand; a condition that still holds opens a new one later."""
    now = timezone.now()
    return [alert for alert in alerts if _alert_close(alert, now=now, user=user)]


def alerts_evaluate_on_request() -> EvaluationReport | None:
    """The web process's share: the heartbeat rule, at most every ALERT_WEB_CHECK_SECONDS.

    A dead worker runs no periodic task, so the alert that says so must come
    from a process that still runs; the throttle keeps page loads cheap.
    """
    if not cache.add("alerts:web-check", True, timeout=settings.ALERT_WEB_CHECK_SECONDS):
        return None
    return alerts_evaluate(conditions=[Alert.Condition.WORKER_DOWN])
