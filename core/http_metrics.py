"""django-prometheus' per-view HTTP metrics, without their per-request label lookups.

`PrometheusAfterMiddleware` asks `metric.labels(view=…, method=…, …)` seven
times per request, and prometheus_client validates and looks the labels up
on every call: about a tenth of a webhook delivery's CPU. The label values
are few and fixed (views, methods, statuses), so each series' child is
looked up once per process and kept; the series and their values are
django-prometheus' own.
"""

from __future__ import annotations

from typing import Any

from django_prometheus import middleware


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
