"""The provider webhook endpoint: thin, fast, and never a 500 with a traceback.

`POST /webhooks/<provider>/<chip_key>/` hands the raw body to
`channels.services.webhook_receive`; `GET` on the same URL is Meta's
subscription handshake. Errors become small JSON bodies with the status a
provider understands (4xx: do not retry; 503: retry later).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import DatabaseError, DataError
from django.http import Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels import services
from channels.serializers import WebhookAcceptedSerializer, WebhookErrorSerializer

logger = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_SECONDS = 30


class PayloadTooLarge(Exception):
    pass


def _error(code: str, detail: str, http_status: int, **extra: Any) -> Response:
    return Response({"error": code, "detail": detail, **extra}, status=http_status)


def webhook_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """Every failure of the webhook view as JSON; the database being down is a 503."""
    if isinstance(exc, services.WebhookError):
        extra = {"event_id": exc.event_id} if exc.event_id else {}
        return _error(exc.code, exc.detail, exc.status_code, **extra)
    if isinstance(exc, PayloadTooLarge):
        limit = settings.WEBHOOK_MAX_BODY_BYTES
        return _error(
            "too_large", f"body over {limit} bytes", status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
        )
    if isinstance(exc, DataError):
        # The database refused a value from the body: the body's fault, not an outage.
        logger.warning("webhook: body the database cannot store: %s", exc)
        return _error("invalid", "body has values that cannot be stored", 400)
    if isinstance(exc, DatabaseError):
        logger.warning("webhook: database unavailable: %s", exc)
        response = _error(
            "unavailable", "database unavailable, retry later", status.HTTP_503_SERVICE_UNAVAILABLE
        )
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response
    if isinstance(exc, APIException):
        return _error(exc.default_code, str(exc.detail), exc.status_code)
    if isinstance(exc, Http404):
        return _error("not_found", "not found", status.HTTP_404_NOT_FOUND)
    logger.exception("webhook: unexpected error")
    return _error("internal", "internal error", status.HTTP_500_INTERNAL_SERVER_ERROR)


def _read_body(request: Request) -> bytes:
    """The raw body, refusing more than WEBHOOK_MAX_BODY_BYTES whatever Content-Length says."""
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise PayloadTooLarge
    # Read the stream ourselves (not request.body) so the cap is ours, not
    # DATA_UPLOAD_MAX_MEMORY_SIZE's, and a lying Content-Length cannot pass it.
    body = request._request.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge
    return body


_ERRORS = {
    code: OpenApiResponse(WebhookErrorSerializer, description=description)
    for code, description in {
        400: "Malformed JSON or a body this provider never sends (stored as invalid)",
        401: "The provider's credential is missing",
        403: "The provider's signature or token does not match",
        404: "Unknown provider or chip key",
        413: "Body larger than 1 MiB",
        503: "Database unavailable; the provider should retry",
    }.items()
}


class WebhookView(APIView):
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]

    def get_exception_handler(self):  # type: ignore[no-untyped-def]
        return webhook_exception_handler

    @extend_schema(
        operation_id="webhook_receive",
        summary="Receive a provider webhook",
        description=(
            "Stores the delivery and answers at once; normalization runs in a worker. "
            "A retried delivery answers 200 `duplicate` and changes nothing."
        ),
        request={"application/json": OpenApiTypes.OBJECT},
        responses={200: WebhookAcceptedSerializer, **_ERRORS},
        tags=["webhooks"],
    )
    def post(self, request: Request, provider: str, chip_key: str) -> Response:
        body = _read_body(request)
        intake = services.webhook_receive(
            provider=provider, chip_key=chip_key, headers=request.headers, body=body
        )
        return Response(
            {"status": "accepted" if intake.created else "duplicate", "event_id": intake.event.pk}
        )

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
    def get(self, request: Request, provider: str, chip_key: str) -> HttpResponse:
        challenge = services.webhook_handshake(
            provider=provider, chip_key=chip_key, params=request.query_params
        )
        return HttpResponse(challenge, content_type="text/plain")
