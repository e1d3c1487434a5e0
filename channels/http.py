"""The one place outbound provider HTTP clients are built.

Every provider call goes through a client made here, so timeouts are never
forgotten and tests have one seam (`transport=`) to swap the network for
`httpx.MockTransport` or to point at a local fake server.

The default transport connects only to public addresses (see
`channels.provider_urls`): the address is checked when the socket is opened,
on the very address it connects to, so a chip URL whose host name resolves
to an internal address, now or after it was saved, is never called. Provider
error text kept on messages and chips is short and printable.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpcore
import httpx
from django.conf import settings
from django.utils.translation import gettext

from channels.provider_urls import UnsafeProviderURL, provider_url_check, public_addresses
from channels.providers.base import ErrorKind, SendResult, printable_excerpt

USER_AGENT = "sdr-ops/1.0 (+outbox)"


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's one TLS context, shared by every outbound client.

    httpx builds a new one (reading the whole CA bundle) for every client it
    creates, even for a plain-http URL: per send, per typing call and per
    model call that was half of an agent worker's time under load
    (bench/README.md, reply latency). Made on first use, in the worker.
    """
    return httpx.create_ssl_context()


def provider_timeout() -> httpx.Timeout:
    return httpx.Timeout(
        settings.OUTBOX_HTTP_TIMEOUT_SECONDS, connect=settings.OUTBOX_HTTP_CONNECT_TIMEOUT_SECONDS
    )


class _PublicOnlyBackend(httpcore.SyncBackend):
    """Opens TCP connections only to public addresses (unless PROVIDER_ALLOW_PRIVATE_URLS)."""

    def connect_tcp(self, host: str, port: int, **kwargs: Any) -> httpcore.NetworkStream:
        if not settings.PROVIDER_ALLOW_PRIVATE_URLS:
            # Connect to the address just checked, not to a second resolution
            # of the name; TLS still verifies the certificate for `host`.
            host = public_addresses(host, port)[0]
        return super().connect_tcp(host, port, **kwargs)


def public_only_transport() -> httpx.HTTPTransport:
    """httpx's transport with the connection-time address check."""
    transport = httpx.HTTPTransport(verify=tls_context())
    # httpx does not expose httpcore's network_backend; its pool keeps it here.
    transport._pool._network_backend = _PublicOnlyBackend()
    return transport


def provider_client(*, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """An httpx client for provider APIs; the caller closes it (use it as a context manager)."""
    return httpx.Client(
        timeout=provider_timeout(),
        transport=transport or public_only_transport(),
        headers={"User-Agent": USER_AGENT},
        # Providers answer sends directly; a redirect would mean a wrong base URL.
        follow_redirects=False,
    )


def post_json(
    client: httpx.Client,
    url: str,
    *,
    json: object,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response | SendResult:
    """POST a JSON body; a network failure comes back as a transient SendResult.

    Adapters then classify the response they got; they never raise for the
    provider's answers, so the outbox is the only place that decides retries.
    A URL that may not be called is an AUTH-kind failure: a configuration
    error that ops fix on the chip (retried, and the circuit breaker alerts).
    """
    try:
        provider_url_check(url, resolve=False)
        return client.post(url, json=json, headers=headers, params=params)
    except UnsafeProviderURL as exc:
        return SendResult.failed(
            ErrorKind.AUTH, gettext("provider URL blocked: %(reason)s") % {"reason": exc}
        )
    except httpx.TimeoutException as exc:
        return SendResult.failed(ErrorKind.TRANSIENT, f"timeout: {type(exc).__name__}")
    except httpx.HTTPError as exc:
        return SendResult.failed(ErrorKind.TRANSIENT, f"network error: {type(exc).__name__}: {exc}")


class _HasHeaders(Protocol):
    @property
    def headers(self) -> Mapping[str, str]: ...


def retry_after_seconds(response: _HasHeaders) -> float | None:
    """Retry-After in seconds (delta form or HTTP date); None when absent or unreadable."""
    raw = response.headers.get("Retry-After", "").strip()
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def response_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def classify_status(response: httpx.Response, error: str) -> SendResult:
    """The generic classification by HTTP status, for answers a provider gives no code for."""
    status = response.status_code
    if status == 429:
        return SendResult.failed(
            ErrorKind.RATE_LIMITED,
            error,
            http_status=status,
            retry_after=retry_after_seconds(response),
        )
    if status in (401, 403):
        return SendResult.failed(ErrorKind.AUTH, error, http_status=status)
    if status in (408, 425) or status >= 500:
        return SendResult.failed(
            ErrorKind.TRANSIENT,
            error,
            http_status=status,
            retry_after=retry_after_seconds(response),
        )
    return SendResult.failed(ErrorKind.PERMANENT, error, http_status=status)


def body_excerpt(response: httpx.Response, limit: int = 200) -> str:
    """The start of an answer's body, for an error message: short, one printable line."""
    return printable_excerpt(response.text or "", limit)
