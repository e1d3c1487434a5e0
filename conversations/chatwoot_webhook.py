"""`POST /webhooks/chatwoot/<token>/`: Chatwoot's account, inbox or agent-bot webhook.

Thin: the body is read up to WEBHOOK_MAX_BODY_BYTES, authenticated on the raw
bytes before it is parsed, and handed to `chatwoot_event_handle`. Every
refusal is a small JSON 4xx; nothing a stranger sends becomes a 5xx.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError, DataError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from channels.providers.base import PayloadError
from channels.services import payload_load
from conversations.chatwoot_events import (
    ChatwootRefused,
    chatwoot_authenticate,
    chatwoot_event_handle,
)

logger = logging.getLogger(__name__)


def _refused(code: str, detail: str, status: int) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status)


@csrf_exempt
def chatwoot_webhook(request: HttpRequest, token: str) -> JsonResponse:
    if request.method != "POST":
        return _refused("method_not_allowed", "POST only", 405)
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return _refused("too_large", f"body over {limit} bytes", 413)
    body = request.read(limit + 1)
    if len(body) > limit:
        return _refused("too_large", f"body over {limit} bytes", 413)
    try:
        chatwoot_authenticate(token=token, headers=request.headers, body=body)
        try:
            payload = payload_load(body)
        except PayloadError as exc:
            raise ChatwootRefused("invalid", str(exc)[:200], 400) from exc
        delivery = request.headers.get("X-Chatwoot-Delivery", "")
        result = chatwoot_event_handle(payload=payload, delivery=delivery)
    except ChatwootRefused as exc:
        return _refused(exc.code, exc.detail, exc.status)
    except DataError as exc:
        logger.warning("chatwoot webhook: value the database cannot store: %s", exc)
        return _refused("invalid", "body has values that cannot be stored", 400)
    except DatabaseError as exc:
        logger.warning("chatwoot webhook: database unavailable: %s", exc)
        response = _refused("unavailable", "database unavailable, retry later", 503)
        response["Retry-After"] = "30"
        return response
    return JsonResponse({"outcome": result.outcome, "conversation": result.conversation_id})
