"""django-prometheus' per-view HTTP metrics, without their per-request label lookups.

`PrometheusAfterMiddleware` asks `metric.labels(view=…, method=…, …)` seven
times per request, and prometheus_client validates and looks the labels up
on every call: about 2.5 % of a webhook delivery's instructions. The label values
are few and fixed (views, methods, statuses), so each series' child is
looked up once per process and kept; the series and their values are
django-prometheus' own.
"""

from __future__ import annotations

import time
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
    same labels in one call, its children looked up once per process. One
    difference: the latency series is labelled with "<invalid method>" for
    a method django-prometheus does not know, as its other series are, not
    with whatever a stranger sent (one new series per made-up method). A
    view served this way must not raise: the exception series are not
    recorded here.
    """

    def __init__(self) -> None:
        self.metrics = middleware.Metrics.get_instance()
        self._children: dict[tuple[Any, ...], Any] = {}

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
        transport = "https" if request.is_secure() else "http"
        status = str(response.status_code)
        # PrometheusBeforeMiddleware
        m.requests_total.inc()
        m.responses_total.inc()
        m.requests_latency_before.observe(elapsed)
        # PrometheusAfterMiddleware, in the order of its hooks
        self._child(m.requests_by_method, method).inc()
        self._child(m.requests_by_transport, transport).inc()
        if meta.get("HTTP_X_REQUESTED_WITH") == "XMLHttpRequest":
            m.requests_ajax.inc()
        m.requests_body_bytes.observe(int(meta.get("CONTENT_LENGTH") or 0))
        self._child(m.requests_by_view_transport_method, view_name, transport, method).inc()
        self._child(m.responses_by_status, status).inc()
        self._child(m.responses_by_status_view_method, status, view_name, method).inc()
        self._child(m.responses_by_charset, str(response.charset)).inc()
        if response.streaming:
            m.responses_streaming.inc()
        else:
            m.responses_body_bytes.observe(len(response.content))
        self._child(m.requests_latency_by_view_method, view_name, method).observe(elapsed)
