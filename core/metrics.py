"""The platform's own Prometheus series, exported at /metrics next to django-prometheus'.

Gauges that describe shared state (outbox backlog, worker heartbeat) are read
from the database at scrape time, so every web process reports the same
truth whichever process did the work.
"""

import logging
from collections.abc import Iterator

from django.db import DatabaseError
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from core import selectors

logger = logging.getLogger(__name__)

# Incremented where the work happens (web process at intake, worker at
# processing). outcome: accepted, duplicate, invalid, unauthenticated,
# forbidden, not_found, processed, ignored, failed.
webhook_events_total = Counter(
    "webhook_events_total",
    "Provider webhook deliveries by provider, event type and outcome.",
    ["provider", "event", "outcome"],
)


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


_collector: PlatformStateCollector | None = None


def register_collectors() -> None:
    global _collector
    if _collector is None:
        _collector = PlatformStateCollector()
        REGISTRY.register(_collector)
