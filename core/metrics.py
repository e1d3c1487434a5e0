"""The platform's own Prometheus series, exported at /metrics next to django-prometheus'.

Gauges that describe shared state (outbox backlog, worker heartbeat) are read
from the database at scrape time, so every web process reports the same
truth whichever process did the work.

Counters (`webhook_events_total`, `outbound_messages_total`,
`integration_requests_total`, `handoffs_total`) and the histogram live in
the database (`core.MetricCounter`, one row per series): django-q2 workers
are separate processes, often on other machines, so an in-process Counter
would never reach the web process's /metrics, and Prometheus' multiprocess
mode only merges processes sharing one host's directory (and
django-prometheus' multiprocess export drops custom collectors).

An increment does not touch the database: it adds to a per-process buffer,
written in one multi-row upsert (one statement, one commit) at most every
`METRICS_FLUSH_SECONDS`, at the end of a request or a task, before this
process answers a scrape, and when it exits. A counter row updated by every
request in its own commit was the webhook's slowest step (a WAL flush and a
row lock every worker waited on). The price: counts of a process that goes
idle reach /metrics at its next request, task, scrape or exit, and a process
killed with SIGKILL loses at most its last few seconds of counts (Prometheus
counters tolerate both). `METRICS_FLUSH_SECONDS=0` writes through at once,
inside the caller's transaction.
"""

import atexit
import json
import logging
import multiprocessing.util
import os
import threading
import time
from collections.abc import Iterator, Mapping

from django.conf import settings
from django.core.signals import request_finished
from django.db import DatabaseError, connection
from django.utils import timezone
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
    "agent_worker_heartbeat_age_seconds": (
        "Seconds since a worker of the agent's cluster last ran the heartbeat task (-1: never)."
    ),
}


class PlatformStateCollector(Collector):
    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Without describe(), registering would call collect() and query the
        # database during app loading.
        for name, documentation in _GAUGES.items():
            yield GaugeMetricFamily(name, documentation)
        yield GaugeMetricFamily("chips", "", labels=("status", "circuit"))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            backlog = selectors.outbox_backlog()
            heartbeat_age = selectors.heartbeat_age_seconds()
            agent_heartbeat_age = selectors.heartbeat_age_seconds(cluster=settings.Q_AGENT_CLUSTER)
        except DatabaseError as exc:
            # A scrape must not fail because the database blinked; the series
            # go missing and the `up`-style alerts fire instead.
            logger.warning("metrics: database unavailable: %s", exc)
            return
        values = {
            "outbox_pending_messages": backlog["pending_messages"],
            "outbox_oldest_pending_seconds": backlog["oldest_pending_seconds"] or 0,
            "worker_heartbeat_age_seconds": -1 if heartbeat_age is None else heartbeat_age,
            "agent_worker_heartbeat_age_seconds": (
                -1 if agent_heartbeat_age is None else agent_heartbeat_age
            ),
        }
        for name, documentation in _GAUGES.items():
            yield GaugeMetricFamily(name, documentation, value=values[name])
        yield _chips_family()


def _chips_family() -> GaugeMetricFamily:
    """Chips by connection status and circuit state (the chip-down alert's series)."""
    from core.dashboard import chip_state_counts

    family = GaugeMetricFamily(
        "chips",
        "WhatsApp numbers by connection status and circuit state.",
        labels=("status", "circuit"),
    )
    for (status, circuit), count in sorted(chip_state_counts().items()):
        family.add_metric([status, circuit], count)
    return family


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
        "Seconds from the lead's last message of a turn reaching the platform (its webhook) "
        "to the provider accepting the first part of the reply: what the lead feels.",
        (1, 2, 3, 5, 6, 8, 10, 15, 30, 60, 120, 300),
    ),
    "agent_debounce_seconds": (
        "Seconds from the lead's last message of a turn reaching the platform to the agent "
        "starting to answer it (the burst window plus any queueing).",
        (0.5, 1, 2, 4, 5, 6, 8, 10, 30, 60, 120),
    ),
    "agent_llm_seconds": (
        "Seconds the model took to answer one turn (every retry included).",
        (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
    ),
    "agent_turn_seconds": (
        "Seconds from the lead's last message of a turn reaching the platform to the agent's "
        "reply being queued.",
        (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300),
    ),
    "outbox_reply_wait_seconds": (
        "Seconds from a reply being queued to the provider accepting it (first part of a turn).",
        (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
    ),
    "handoff_pickup_seconds": (
        "Seconds from a handoff being requested to an SDR taking it.",
        (30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400),
    ),
    "handoff_resolution_seconds": (
        "Seconds from a handoff being requested to it being resolved (given back or closed).",
        (60, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400, 259200),
    ),
}
_SUM_KEY = json.dumps({"sum": "ms"})


def counter_inc(name: str, labels: Mapping[str, str], amount: int = 1) -> None:
    """Add `amount` to a counter (buffered in this process; see the module's docstring)."""
    _, label_names = COUNTERS[name]
    values = (name, *(str(labels[label]) for label in label_names))
    key = _series_keys.get(values)
    if key is None:
        key = json.dumps(dict(zip(label_names, values[1:], strict=True)), sort_keys=True)
        if len(_series_keys) >= _SERIES_KEYS_MAX:
            _series_keys.clear()
        _series_keys[values] = key
    _buffer.add(name, key, amount)


# Each series' stored label key, built once: counter_inc runs on every webhook.
# Labels are bounded by design; the cap only guards against a bug that is not.
_SERIES_KEYS_MAX = 10_000
_series_keys: dict[tuple[str, ...], str] = {}


class _Buffer:
    """Increments not yet written, per (series, labels); one per process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[tuple[str, str], int] = {}
        self.pid = os.getpid()
        self.flushed_at = time.monotonic()

    def add(self, name: str, key: str, amount: int) -> None:
        with self.lock:
            self._forget_parents()
            self.pending[(name, key)] = self.pending.get((name, key), 0) + amount
        if settings.METRICS_FLUSH_SECONDS <= 0:
            self.flush()

    def _forget_parents(self) -> None:
        # A forked child (gunicorn, django-q2 workers) inherits its parent's
        # buffer, which the parent still owns and will write.
        if self.pid != os.getpid():
            self.pid = os.getpid()
            self.pending = {}
            self.flushed_at = time.monotonic()

    def flush_if_due(self) -> None:
        if self.pending and time.monotonic() - self.flushed_at >= settings.METRICS_FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write every pending increment in one upsert; kept for the next try on failure."""
        with self.lock:
            self._forget_parents()
            pending, self.pending = self.pending, {}
            self.flushed_at = time.monotonic()
        if not pending:
            return
        try:
            _rows_add(sorted(pending.items()))
        except DatabaseError as exc:
            if settings.METRICS_FLUSH_SECONDS <= 0:
                raise  # written through, inside the caller's transaction: its error
            logger.warning("metrics: flush failed, kept for the next one: %s", exc)
            with self.lock:
                for series, amount in pending.items():
                    self.pending[series] = self.pending.get(series, 0) + amount


_buffer = _Buffer()


def metrics_flush() -> None:
    """Write this process's pending increments now (scrapes, exits, tests)."""
    _buffer.flush()


def _rows_add(rows: list[tuple[tuple[str, str], int]]) -> None:
    from core.models import MetricCounter

    table = connection.ops.quote_name(MetricCounter._meta.db_table)
    values = ", ".join(["(%s, %s, %s, %s)"] * len(rows))
    now = timezone.now()
    params: list[object] = []
    # Sorted rows: two processes flushing the same series lock them in one
    # order, so they wait for each other instead of deadlocking.
    for (name, key), amount in rows:
        params += [name, key, amount, now]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (name, labels, value, updated_at) VALUES {values} "  # noqa: S608
            f"ON CONFLICT (name, labels) DO UPDATE SET value = {table}.value + EXCLUDED.value, "
            "updated_at = EXCLUDED.updated_at",
            params,
        )


def _flush_after_request(**kwargs: object) -> None:
    # After the response is built, outside any transaction of the view.
    if not connection.in_atomic_block:
        _buffer.flush_if_due()


def _flush_at_exit() -> None:
    try:
        _buffer.flush()
    except Exception:  # exiting: the log line is all we can do
        logger.warning("metrics: final flush failed", exc_info=True)


def connect_flushes() -> None:
    """Flush at the end of requests and tasks, and when the process exits."""
    from django_q.signals import post_execute

    request_finished.connect(_flush_after_request, dispatch_uid="metrics_flush_request")
    post_execute.connect(_flush_after_request, dispatch_uid="metrics_flush_task")
    atexit.register(_flush_at_exit)
    # django-q2 workers are multiprocessing children: they exit through
    # os._exit, which skips atexit but runs these finalizers.
    multiprocessing.util.Finalize(None, _flush_at_exit, exitpriority=10)


def histogram_observe(name: str, seconds: float) -> None:
    """Record one observation of a database histogram (buffered like the counters)."""
    _, bounds = HISTOGRAMS[name]
    bucket = next((bound for bound in bounds if seconds <= bound), None)
    key = json.dumps({"le": "+Inf" if bucket is None else _le(bucket)})
    _buffer.add(name, key, 1)
    _buffer.add(name, _SUM_KEY, max(0, round(seconds * 1000)))


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
            # This process's own recent increments first: a scrape shows them.
            metrics_flush()
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
