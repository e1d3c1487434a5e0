"""The provider webhooks skip the middleware they have no use for.

A provider's POST carries no session, cookie, CSRF token or login, and is
never a static file: sessions, CSRF, authentication, messages, django-axes
and WhiteNoise only cost it time, on the hottest path of the product.
`WebhookMiddleware` is first in MIDDLEWARE; for the webhook URL it calls the
view through WEBHOOK_MIDDLEWARE (the HTTPS redirect and security headers,
the host check and Content-Length, the frame header) instead of MIDDLEWARE,
and records django-prometheus' request series itself, in one call instead of
its two middlewares' six hooks. Every other path, the Chatwoot webhook
included, goes on through the full stack.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from django.conf import settings
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, ResolverMatch, URLResolver, get_resolver
from django.utils.module_loading import import_string

from channels.webhooks import webhook
from core.http_metrics import ViewRequestMetrics

PREFIX = "/webhooks/"


@functools.lru_cache(maxsize=4096)
def _resolve(resolver: URLResolver, path: str) -> ResolverMatch:
    """The URL's match, remembered: each chip posts to the same few URLs all day.

    Resolving walks the URL patterns and builds a ResolverMatch, about 5 % of
    a delivery's instructions. A match is never changed once built, so
    requests can share it; a stranger's made-up URLs only push out old ones.
    Keyed by the resolver, which `clear_url_caches` (a changed ROOT_URLCONF)
    replaces.
    """
    return resolver.resolve(path)


class WebhookMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        # Built like Django builds MIDDLEWARE: each one wraps the next, and an
        # exception in one becomes a response for the ones outside it.
        self._view_middleware = []
        handler: Callable[[HttpRequest], HttpResponse] = self._view_call
        for path in reversed(settings.WEBHOOK_MIDDLEWARE):
            middleware = import_string(path)(handler)
            if hasattr(middleware, "process_view"):
                self._view_middleware.insert(0, middleware.process_view)
            handler = convert_exception_to_response(middleware)
        self._handler = handler
        self._metrics = ViewRequestMetrics()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        if not request.path_info.startswith(PREFIX):
            return self.get_response(request)
        try:
            match = _resolve(get_resolver(getattr(request, "urlconf", None)), request.path_info)
        except Resolver404:
            return self.get_response(request)
        if match.func is not webhook:
            return self.get_response(request)
        request.resolver_match = match
        response = self._handler(request)
        self._metrics.record(request, response, match.view_name, started)
        return response

    def _view_call(self, request: HttpRequest) -> HttpResponse:
        match = request.resolver_match
        for process_view in self._view_middleware:
            response = process_view(request, match.func, match.args, match.kwargs)
            if response is not None:
                return response
        return match.func(request, *match.args, **match.kwargs)
