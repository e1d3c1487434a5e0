"""The one place outbound provider HTTP clients are built.

Every provider call goes through a client made here, so timeouts are never
forgotten and tests have one seam (`transport=`) to swap the network for
`httpx.MockTransport` or to point at a local fake server.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
from django.conf import settings

from channels.providers.base import ErrorKind, SendResult

USER_AGENT = "sdr-ops/1.0 (+outbox)"


def provider_timeout() -> httpx.Timeout:
    return httpx.Timeout(
        settings.OUTBOX_HTTP_TIMEOUT_SECONDS, connect=settings.OUTBOX_HTTP_CONNECT_TIMEOUT_SECONDS
    )


def provider_client(*, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """An httpx client for provider APIs; the caller closes it (use it as a context manager)."""
    return httpx.Client(
        timeout=provider_timeout(),
        transport=transport,
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
    """
    try:
        return client.post(url, json=json, headers=headers, params=params)
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


def body_excerpt(response: httpx.Response, limit: int = 500) -> str:
    text = response.text or ""
    return text[:limit]
