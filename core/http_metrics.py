"""django-prometheus' per-view HTTP metrics, without their per-request label lookups.

`PrometheusAfterMiddleware` asks `metric.labels(view=…, method=…, …)` seven
times per request, and prometheus_client validates and looks the labels up
on every call: about 2.5 % of a webhook delivery's instructions. The label values
are few and fixed (views, methods, statuses), so each series' child is
looked up once per process and kept; the series and their values are
django-prometheus' own.
"""

from __future__ import annotations

import bisect
import threading
import time
import weakref
from typing import Any

from django_prometheus import middleware

# The methods django-prometheus labels by name; any other is "<invalid method>".
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH"}
)


class PrometheusAfterMiddleware(middleware.PrometheusAfterMiddleware):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._children: dict[tuple[Any, ...], Any] = {}

    def label_metric(self, metric: Any, request: Any, response: Any = None, **labels: Any) -> Any:
        if not labels:
            return metric
        # The metric objects live as long as the process; their ids stay theirs.
        key = (id(metric), *labels.items())
        child = self._children.get(key)
        if child is None:
            # Bounded like prometheus_client's own children: one per series.
            child = self._children[key] = metric.labels(**labels)
        return child


class ViewRequestMetrics:
    """What django-prometheus' two middlewares record for a request, for a view served outside them.

    The provider webhooks skip most of MIDDLEWARE (channels/middleware.py),
    the two Prometheus middlewares included: their hooks were about a
    twelfth of a delivery's CPU. This records the same series with the
    same labels, its children looked up once per process. One
    difference: the latency series is labelled with "<invalid method>" for
    a method django-prometheus does not know, as its other series are, not
    with whatever a stranger sent (one new series per made-up method). A
    view served this way must not raise: the exception series are not
    recorded here.

    Eleven counter and histogram updates, each taking a lock, were still 7 %
    of a delivery's instructions. A request is now a count under its labels
    and a bucket count per histogram, added to the series in one pass every
    FLUSH_SECONDS at most, and by `/metrics` before it answers, so a scrape
    sees every request its process served.
    """

    FLUSH_SECONDS = 1.0

    def __init__(self) -> None:
        self.metrics = middleware.Metrics.get_instance()
        self._children: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()
        # (view, method, transport, status, charset, ajax, streaming) -> requests
        self._requests: dict[tuple[Any, ...], int] = {}
        # (histogram child, bucket index) -> observations; histogram child -> sum
        self._buckets: dict[tuple[Any, int], int] = {}
        self._sums: dict[Any, float] = {}
        self._flushed_at = time.monotonic()
        _recorders.add(self)

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def record(self, request: Any, response: Any, view_name: str, started: float) -> None:
        """Count `request` and its `response`; `started` is a time.perf_counter() reading."""
        m = self.metrics
        elapsed = time.perf_counter() - started
        meta = request.META
        method = request.method if request.method in _METHODS else "<invalid method>"
        key = (
            view_name,
            method,
            "https" if request.is_secure() else "http",
            response.status_code,
            response.charset,
            meta.get("HTTP_X_REQUESTED_WITH") == "XMLHttpRequest",
            response.streaming,
        )
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1
            self._observe(m.requests_latency_before, elapsed)
            self._observe(m.requests_body_bytes, int(meta.get("CONTENT_LENGTH") or 0))
            if not response.streaming:
                self._observe(m.responses_body_bytes, len(response.content))
            self._observe(
                self._child(m.requests_latency_by_view_method, view_name, method), elapsed
            )
            due = time.monotonic() - self._flushed_at >= self.FLUSH_SECONDS
        if due:
            self.flush()

    def _observe(self, histogram: Any, value: float) -> None:
        # The bucket Histogram.observe would add to: the first bound >= value.
        key = (histogram, bisect.bisect_left(histogram._upper_bounds, value))
        self._buckets[key] = self._buckets.get(key, 0) + 1
        self._sums[histogram] = self._sums.get(histogram, 0) + value

    def flush(self) -> None:
        """Add what was recorded since the last flush to the series."""
        with self._lock:
            requests, self._requests = self._requests, {}
            buckets, self._buckets = self._buckets, {}
            sums, self._sums = self._sums, {}
            self._flushed_at = time.monotonic()
        m = self.metrics
        for (view, method, transport, status, charset, ajax, streaming), n in requests.items():
            # PrometheusBeforeMiddleware
            m.requests_total.inc(n)
            m.responses_total.inc(n)
            # PrometheusAfterMiddleware, in the order of its hooks
            self._child(m.requests_by_method, method).inc(n)
            self._child(m.requests_by_transport, transport).inc(n)
            if ajax:
                m.requests_ajax.inc(n)
            self._child(m.requests_by_view_transport_method, view, transport, method).inc(n)
            self._child(m.responses_by_status, str(status)).inc(n)
            self._child(m.responses_by_status_view_method, str(status), view, method).inc(n)
            self._child(m.responses_by_charset, str(charset)).inc(n)
            if streaming:
                m.responses_streaming.inc(n)
        # prometheus_client keeps a histogram as a count per bucket and a sum
        # (Histogram.observe adds to one of each); a test holds these to it.
        for (histogram, index), n in buckets.items():
            histogram._buckets[index].inc(n)
        for histogram, total in sums.items():
            histogram._sum.inc(total)


_recorders: weakref.WeakSet[ViewRequestMetrics] = weakref.WeakSet()


def view_request_metrics_flush() -> None:
    """Add every recorder's pending counts to the series (before `/metrics` answers)."""
    for recorder in list(_recorders):
        recorder.flush()
