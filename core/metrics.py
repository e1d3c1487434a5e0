"""The platform's own Prometheus series, exported at /metrics next to django-prometheus'.

Gauges that describe shared state (outbox backlog, worker heartbeat) are read
from the database at scrape time, so every web process reports the same
truth whichever process did the work.

Counters (`webhook_events_total`, `outbound_messages_total`,
`integration_requests_total`, `handoffs_total`) live in the database (`core.MetricCounter`, one
atomic UPDATE per event): django-q2 workers are separate processes, often on
other machines, so an in-process Counter would never reach the web process's
/metrics, and Prometheus' multiprocess mode only merges processes sharing one
host's directory (and django-prometheus' multiprocess export drops custom
collectors).
"""

import json
import logging
from collections.abc import Iterator, Mapping

from django.db import DatabaseError
from django.db.models import F
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from core import selectors

logger = logging.getLogger(__name__)

_GAUGES = {
    "outbox_pending_messages": "Outbound messages queued or being sent.",
    "outbox_oldest_pending_seconds": (
        "Seconds the oldest due outbound message has been waiting (0 when none)."
    ),
    "worker_heartbeat_age_seconds": (
        "Seconds since a django-q2 worker last ran the heartbeat task (-1: never)."
    ),
}


class PlatformStateCollector(Collector):
    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Without describe(), registering would call collect() and query the
        # database during app loading.
        for name, documentation in _GAUGES.items():
            yield GaugeMetricFamily(name, documentation)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            backlog = selectors.outbox_backlog()
            heartbeat_age = selectors.heartbeat_age_seconds()
        except DatabaseError as exc:
            # A scrape must not fail because the database blinked; the series
            # go missing and the `up`-style alerts fire instead.
            logger.warning("metrics: database unavailable: %s", exc)
            return
        values = {
            "outbox_pending_messages": backlog["pending_messages"],
            "outbox_oldest_pending_seconds": backlog["oldest_pending_seconds"] or 0,
            "worker_heartbeat_age_seconds": -1 if heartbeat_age is None else heartbeat_age,
        }
        for name, documentation in _GAUGES.items():
            yield GaugeMetricFamily(name, documentation, value=values[name])


# Database-backed counters: name -> (documentation, label names).
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    # outcome at intake (web process): accepted, duplicate, invalid,
    # unauthenticated, forbidden; at processing (worker): processed, ignored,
    # invalid, failed. Unknown URLs get no series: their provider label would
    # be whatever a scanner typed.
    "webhook_events_total": (
        "Provider webhook deliveries by provider, event type and outcome.",
        ("provider", "event", "outcome"),
    ),
    "outbound_messages_total": (
        "Outbound message outcomes decided by the outbox: sent, retry, held, cancelled, "
        "failed_provider (retries exhausted), failed_permanent.",
        ("outcome",),
    ),
    "integration_requests_total": (
        "Requests to external integrations (WhatsApp providers, Slack) by outcome.",
        ("integration", "operation", "outcome"),
    ),
    "handoffs_total": (
        "Conversations handed to a human, by reason (lead_request, agent_decision, ...).",
        ("reason",),
    ),
}

# Database-backed histograms (observed in workers, like the counters): name ->
# (documentation, upper bounds in seconds). One row per bucket holds the
# observations that fell in it (not cumulative, so an observation is one
# UPDATE) plus one row for the sum in milliseconds; the collector adds up.
HISTOGRAMS: dict[str, tuple[str, tuple[float, ...]]] = {
    "agent_response_seconds": (
        "Seconds from the lead's last message of a turn to the agent's reply being queued.",
        (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300),
    ),
}
_SUM_KEY = json.dumps({"sum": "ms"})


def counter_inc(name: str, labels: Mapping[str, str], amount: int = 1) -> None:
    """Add `amount` to a database counter; joins the caller's transaction if any."""
    _, label_names = COUNTERS[name]
    key = json.dumps({label: str(labels[label]) for label in label_names}, sort_keys=True)
    _row_add(name=name, key=key, amount=amount)


def _row_add(*, name: str, key: str, amount: int) -> None:
    from core.models import MetricCounter

    updated = MetricCounter.objects.filter(name=name, labels=key).update(value=F("value") + amount)
    if not updated:
        # First event of this series; a concurrent creator wins the unique
        # constraint and we add to its row instead.
        counter, created = MetricCounter.objects.get_or_create(
            name=name, labels=key, defaults={"value": amount}
        )
        if not created:
            MetricCounter.objects.filter(pk=counter.pk).update(value=F("value") + amount)


def histogram_observe(name: str, seconds: float) -> None:
    """Record one observation of a database histogram; joins the caller's transaction if any."""
    _, bounds = HISTOGRAMS[name]
    bucket = next((bound for bound in bounds if seconds <= bound), None)
    key = json.dumps({"le": "+Inf" if bucket is None else _le(bucket)})
    _row_add(name=name, key=key, amount=1)
    _row_add(name=name, key=_SUM_KEY, amount=max(0, round(seconds * 1000)))


def _le(bound: float) -> str:
    return str(float(bound))


class DatabaseMetricsCollector(Collector):
    """The database-backed counters and histograms, read in one query per scrape."""

    def describe(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        for name, (documentation, label_names) in COUNTERS.items():
            yield CounterMetricFamily(name, documentation, labels=label_names)
        for name, (documentation, _) in HISTOGRAMS.items():
            yield HistogramMetricFamily(name, documentation)

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        from core.models import MetricCounter

        try:
            rows = list(
                MetricCounter.objects.filter(name__in=[*COUNTERS, *HISTOGRAMS]).values_list(
                    "name", "labels", "value"
                )
            )
        except DatabaseError as exc:
            logger.warning("metrics: database unavailable: %s", exc)
            return
        stored: dict[str, dict[str, int]] = {name: {} for name in [*COUNTERS, *HISTOGRAMS]}
        for name, key, value in rows:
            stored[name][key] = value
        for name, (documentation, label_names) in COUNTERS.items():
            family = CounterMetricFamily(name, documentation, labels=label_names)
            for key, value in stored[name].items():
                labels = json.loads(key)
                family.add_metric([labels.get(label, "") for label in label_names], value)
            yield family
        for name, (documentation, bounds) in HISTOGRAMS.items():
            values = stored[name]
            cumulative = 0
            buckets = []
            for bound in [*(_le(b) for b in bounds), "+Inf"]:
                cumulative += values.get(json.dumps({"le": bound}), 0)
                buckets.append((bound, cumulative))
            yield HistogramMetricFamily(
                name,
                documentation,
                buckets=buckets,
                sum_value=values.get(_SUM_KEY, 0) / 1000,
            )


_registered = False


def register_collectors() -> None:
    global _registered
    if not _registered:
        REGISTRY.register(PlatformStateCollector())
        REGISTRY.register(DatabaseMetricsCollector())
        _registered = True
