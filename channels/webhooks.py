"""The provider webhook endpoint: thin, fast, and never a 500 with a traceback.

`POST /webhooks/<provider>/<chip_key>/` hands the raw body to
`channels.services.webhook_receive`; `GET` on the same URL is Meta's
subscription handshake. Errors become small JSON bodies with the status a
provider understands (4xx: do not retry; 503: retry later).

This is the hottest path of the product (every message and every status
change of every chip), so it is a plain Django view: no DRF request wrapping,
content negotiation or renderer, and `channels.middleware.WebhookMiddleware`
serves it without the middleware it has no use for. `WebhookSchema` only
describes it to drf-spectacular (the OpenAPI schema at /api/schema/).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.db import DatabaseError, DataError
from django.http import HttpRequest, HttpResponse
from django.http.request import HttpHeaders
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import APIException, MethodNotAllowed
from rest_framework.views import APIView

from channels import services
from channels.serializers import WebhookAcceptedSerializer, WebhookErrorSerializer
from core.db import db_run_reusing_connection

logger = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_SECONDS = 30

# Every method the endpoint answers (HEAD as GET, like any Django view), and
# what OPTIONS says (what DRF's metadata said when this was a DRF view).
_ALLOWED = "GET, POST, HEAD, OPTIONS"
_OPTIONS = {
    "name": "Webhook",
    "description": "",
    "renders": ["application/json"],
    "parses": ["application/json"],
}


class PayloadTooLarge(Exception):
    pass


class LengthRequired(Exception):
    """A chunked body on a server that cannot tell us where it ends."""


def _json(data: dict[str, Any], status: int = 200) -> HttpResponse:
    # Compact and UTF-8, as the DRF view this replaced rendered it.
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return HttpResponse(body.encode(), status=status, content_type="application/json")


def _error(code: str, detail: str, status: int, **extra: Any) -> HttpResponse:
    return _json({"error": code, "detail": detail, **extra}, status)


def _error_response(exc: Exception) -> HttpResponse:
    """Every failure of the webhook view as JSON; the database being down is a 503."""
    if isinstance(exc, services.WebhookError):
        extra = {"event_id": exc.event_id} if exc.event_id else {}
        response = _error(exc.code, exc.detail, exc.status_code, **extra)
        if isinstance(exc, services.WebhookRateLimited):
            response["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, PayloadTooLarge):
        limit = settings.WEBHOOK_MAX_BODY_BYTES
        return _error("too_large", f"body over {limit} bytes", 413)
    if isinstance(exc, LengthRequired):
        return _error(
            "length_required", "send Content-Length (this server cannot read chunked bodies)", 411
        )
    if isinstance(exc, APIException):
        # DRF's MethodNotAllowed, for its translated message.
        return _error(exc.default_code, str(exc.detail), exc.status_code)
    if isinstance(exc, DataError):
        # The database refused a value from the body: the body's fault, not an outage.
        logger.warning("webhook: body the database cannot store: %s", exc)
        return _error("invalid", "body has values that cannot be stored", 400)
    if isinstance(exc, DatabaseError):
        logger.warning("webhook: database unavailable: %s", exc)
        response = _error("unavailable", "database unavailable, retry later", 503)
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response
    logger.exception("webhook: unexpected error")
    return _error("internal", "internal error", 500)


@csrf_exempt
def webhook(request: HttpRequest, provider: str, chip_key: str) -> HttpResponse:
    """POST: receive a delivery; GET: Meta's handshake; anything else 405, all as JSON."""
    method = request.method or ""
    try:
        if method == "POST":
            response = _receive(request, provider, chip_key)
        elif method in ("GET", "HEAD"):
            challenge = services.webhook_handshake(
                provider=provider, chip_key=chip_key, params=request.GET
            )
            response = HttpResponse(challenge, content_type="text/plain")
        elif method == "OPTIONS":
            response = _json(_OPTIONS)
        else:
            raise MethodNotAllowed(method)
    except Exception as exc:
        response = _error_response(exc)
    response["Allow"] = _ALLOWED
    return response


def _receive(request: HttpRequest, provider: str, chip_key: str) -> HttpResponse:
    body = _read_body(request)
    # No `SELECT 1` health check before each delivery: a connection a database
    # restart killed fails the delivery's own statement and the delivery is
    # tried once more on a new one. Retrying is what the provider would do
    # after our 503, and a retried delivery is a duplicate.
    intake = db_run_reusing_connection(
        lambda: services.webhook_receive(
            provider=provider, chip_key=chip_key, headers=_headers(request.META), body=body
        )
    )
    return _json(
        {"status": "accepted" if intake.created else "duplicate", "event_id": intake.event_id}
    )


def _headers(meta: dict[str, Any]) -> dict[str, str]:
    """The request's headers by lower-case name: what `request.headers` holds, without building it.

    Django's HttpHeaders parses and title-cases every WSGI variable into a
    case-insensitive mapping; intake only looks names up (the adapters'
    `header()` tries the lower-case name) and stores them lower-cased.
    """
    headers = {}
    for key, value in meta.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
        elif key in _UNPREFIXED_HEADERS:
            headers[key.replace("_", "-").lower()] = value
    return headers


_UNPREFIXED_HEADERS = frozenset(HttpHeaders.UNPREFIXED_HEADERS)


def _read_body(request: HttpRequest) -> bytes:
    """The raw body, refusing more than WEBHOOK_MAX_BODY_BYTES whatever Content-Length says."""
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    meta = request.META
    try:
        declared = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise PayloadTooLarge
    chunked = "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower()
    stream: Any
    if chunked and not meta.get("CONTENT_LENGTH"):
        # Without Content-Length Django reads nothing. gunicorn decodes the
        # chunks and ends the stream with the body (wsgi.input_terminated);
        # a server that does not would block on the socket instead.
        if not meta.get("wsgi.input_terminated"):
            raise LengthRequired
        stream = meta["wsgi.input"]
    else:
        # Read the stream ourselves (not request.body) so the cap is ours, not
        # DATA_UPLOAD_MAX_MEMORY_SIZE's, and a lying Content-Length cannot pass it.
        stream = request
    body = _read_up_to(stream, limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge
    return body


def _read_up_to(stream: Any, size: int) -> bytes:
    """Up to `size` bytes; a stream may return fewer per read before its end."""
    parts: list[bytes] = []
    left = size
    while left > 0:
        part = stream.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


# --- OpenAPI --------------------------------------------------------------------------------

_ERRORS = {
    code: OpenApiResponse(WebhookErrorSerializer, description=description)
    for code, description in {
        400: "Malformed JSON or a body this provider never sends (stored as invalid)",
        401: "The provider's credential is missing",
        403: "The provider's signature or token does not match",
        404: "Unknown provider or chip key",
        411: "Chunked body on a server that cannot read it: send Content-Length",
        413: "Body larger than 1 MiB",
        422: "The body names another provider instance than this chip's (nothing stored)",
        429: "Over the chip's intake limits; deliver again after Retry-After seconds",
        503: "Database unavailable; the provider should retry",
    }.items()
}


# The providers' credentials (README, "Receiving WhatsApp"); documented so
# schema-driven tests send them too.
_CREDENTIAL_HEADERS = {
    "X-Hub-Signature-256": "Meta: sha256=<HMAC-SHA256 of the raw body with the app secret>",
    "apikey": "Evolution: the chip's webhook token",
    "Authorization": "Evolution: Bearer <HS256 JWT>; W-API: Bearer <token>",
    "z-api-token": "Z-API: the chip's webhook token",
    "token": "W-API: the chip's webhook token",
    "X-Sandbox-Token": "Sandbox: the chip's webhook token",
}


# What drf-spectacular reads to describe `webhook`; it never serves a request.
# drf-spectacular documents the URL patterns whose view carries a DRF view
# class in `.cls` (what `APIView.as_view()` and `@api_view` set); `webhook`
# carries this one. (No docstring: it would become the GET's description.)
class WebhookSchema(APIView):
    @extend_schema(
        operation_id="webhook_receive",
        summary="Receive a provider webhook",
        description=(
            "Stores the delivery and answers at once; normalization runs in a worker. "
            "A retried delivery answers 200 `duplicate` and changes nothing."
        ),
        request={"application/json": OpenApiTypes.OBJECT},
        parameters=[
            OpenApiParameter(name, str, OpenApiParameter.HEADER, required=False, description=text)
            for name, text in _CREDENTIAL_HEADERS.items()
        ],
        responses={200: WebhookAcceptedSerializer, **_ERRORS},
        tags=["webhooks"],
    )
    def post(self, request: Any, provider: str, chip_key: str) -> HttpResponse:
        raise NotImplementedError("served by channels.webhooks.webhook")

    @extend_schema(
        operation_id="webhook_verify",
        summary="Meta's webhook subscription handshake",
        parameters=[
            OpenApiParameter("hub.mode", str, required=False),
            OpenApiParameter("hub.verify_token", str, required=False),
            OpenApiParameter("hub.challenge", str, required=False),
        ],
        responses={
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="The challenge"),
            403: _ERRORS[403],
            404: _ERRORS[404],
            503: _ERRORS[503],
        },
        tags=["webhooks"],
    )
    def get(self, request: Any, provider: str, chip_key: str) -> HttpResponse:
        raise NotImplementedError("served by channels.webhooks.webhook")


webhook.cls = WebhookSchema  # type: ignore[attr-defined]
webhook.initkwargs = {}  # type: ignore[attr-defined]
