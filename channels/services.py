"""Webhook intake and processing: the writes behind the webhook view, the task and the admin.

Intake (`webhook_receive`) authenticates, stores one `WebhookEvent` per
delivery and enqueues its processing after commit; it does nothing slow.
Processing (`webhook_event_process`) normalizes the stored payload through the
provider's adapter and ingests the events. The stored event, not the broker,
is the unit of work: a lost task is found again by `webhook_events_requeue_stuck`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from channels.models import Chip, Provider, WebhookEvent
from channels.providers.base import PayloadError, ProviderAdapter, get_adapter
from conversations.ingest import event_ingest
from core.metrics import counter_inc

logger = logging.getLogger(__name__)

PROCESS_TASK = "channels.tasks.process_webhook_event"
STUCK_AFTER = timedelta(seconds=60)
SWEEP_BATCH = 500

# Header values we never keep: they are credentials.
_SECRET_HEADERS = {
    "authorization",
    "apikey",
    "client-token",
    "z-api-token",
    "token",
    "x-sandbox-token",
    "cookie",
}


class WebhookError(Exception):
    """Intake refused the request; `status_code` is what the provider gets."""

    status_code = 400
    code = "invalid"

    def __init__(self, detail: str, *, event_id: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.event_id = event_id


class WebhookNotFound(WebhookError):
    status_code = 404
    code = "not_found"


class WebhookUnauthenticated(WebhookError):
    status_code = 401
    code = "unauthenticated"


class WebhookForbidden(WebhookError):
    status_code = 403
    code = "forbidden"


class WebhookInvalid(WebhookError):
    status_code = 400
    code = "invalid"


@dataclass(frozen=True)
class Intake:
    event: WebhookEvent
    created: bool


def _count(provider: str, event: str, outcome: str) -> None:
    counter_inc("webhook_events_total", {"provider": provider, "event": event, "outcome": outcome})


def webhook_chip_get(*, provider: str, chip_key: str) -> tuple[Chip, ProviderAdapter]:
    """The chip a webhook URL names, with its adapter; WebhookNotFound otherwise."""
    if provider not in Provider.values:
        raise WebhookNotFound("unknown provider")
    chip = Chip.objects.filter(provider=provider, webhook_key=chip_key).first()
    if chip is None:
        raise WebhookNotFound("unknown chip")
    return chip, get_adapter(provider)


def webhook_authenticate(
    *, chip: Chip, adapter: ProviderAdapter, headers: Mapping[str, str], body: bytes
) -> None:
    """Raise 401 when the provider's credential is missing, 403 when it is wrong."""
    if adapter.verify(chip, headers, body):
        return
    expects_credential = adapter.always_signed or bool(chip.webhook_token)
    lowered = {key.lower() for key in headers}
    if expects_credential and not any(
        name.lower() in lowered for name in adapter.credential_headers
    ):
        raise WebhookUnauthenticated("missing webhook credential")
    raise WebhookForbidden("webhook credential does not match")


def webhook_receive(
    *, provider: str, chip_key: str, headers: Mapping[str, str], body: bytes
) -> Intake:
    """Authenticate and store one webhook delivery; enqueue its processing after commit.

    A retried delivery (same dedupe key) returns the stored event and enqueues nothing.
    """
    chip, adapter = webhook_chip_get(provider=provider, chip_key=chip_key)
    try:
        webhook_authenticate(chip=chip, adapter=adapter, headers=headers, body=body)
    except WebhookError as exc:
        _count(provider, "", exc.code)
        raise
    kept_headers = _headers_to_keep(headers)

    try:
        payload = _storable(json.loads(body))
    except (ValueError, UnicodeDecodeError) as exc:
        _reject(chip=chip, payload={}, headers=kept_headers, body=body, error=f"not JSON: {exc}")
        raise WebhookInvalid("body is not valid JSON") from exc
    event_type = adapter.event_type(payload)
    try:
        # Pure and fast: refusing an unknown shape now lets the provider see the 400.
        adapter.parse_inbound(payload, kept_headers)
    except PayloadError as exc:
        event = _reject(
            chip=chip,
            payload=payload,
            headers=kept_headers,
            body=b"",
            error=str(exc),
            event_type=event_type,
        )
        raise WebhookInvalid(str(exc), event_id=event.pk) from exc
    except Exception:
        # A bug in our parser must not lose the delivery: store it, and let
        # processing record the failure so it can be reprocessed once fixed.
        logger.exception("webhook: %s parser crashed on a delivery; storing it", provider)

    dedupe_key = adapter.dedupe_key(payload, kept_headers)[:255]
    fields = {
        "provider": provider,
        "event_type": event_type[:100],
        "payload": payload,
        "headers": kept_headers,
    }
    with transaction.atomic():
        if dedupe_key:
            # get_or_create settles a concurrent duplicate through the unique constraint.
            event, created = WebhookEvent.objects.get_or_create(
                chip=chip, dedupe_key=dedupe_key, defaults=fields
            )
        else:
            event, created = WebhookEvent.objects.create(chip=chip, **fields), True
        if created:
            event_id = event.pk
            transaction.on_commit(lambda: webhook_event_enqueue(event_id=event_id), robust=True)
    outcome = "accepted" if created else "duplicate"
    _count(provider, event.event_type, outcome)
    logger.info(
        "webhook received provider=%s chip=%s event=%s id=%s outcome=%s",
        provider,
        chip.pk,
        event.event_type,
        event.pk,
        outcome,
    )
    return Intake(event=event, created=created)


def _reject(
    *,
    chip: Chip,
    payload: object,
    headers: Mapping[str, str],
    body: bytes,
    error: str,
    event_type: str = "",
) -> WebhookEvent:
    """Keep an invalid delivery for the ops to inspect; it is never processed."""
    event = WebhookEvent.objects.create(
        chip=chip,
        provider=chip.provider,
        event_type=event_type[:100],
        payload=payload if isinstance(payload, dict | list) else {"value": payload},
        raw_body=_storable(body.decode("utf-8", errors="replace")),
        headers=_storable(dict(headers)),
        status=WebhookEvent.Status.INVALID,
        error=error[:2000],
        processed_at=timezone.now(),
    )
    _count(chip.provider, event.event_type, "invalid")
    return event


def _headers_to_keep(headers: Mapping[str, str]) -> dict[str, str]:
    kept = {}
    for key, value in headers.items():
        name = key.lower()
        kept[name] = "***" if name in _SECRET_HEADERS else str(value)[:500]
    return _storable(kept)


def _storable(value: Any) -> Any:
    """The JSON value PostgreSQL can store: no NUL characters, no lone surrogates.

    jsonb and text reject both; a provider's odd byte must not turn into a 5xx
    (the provider would retry it forever).
    """
    if isinstance(value, str):
        return value.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "")
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


def webhook_event_enqueue(*, event_id: int) -> None:
    """Queue the processing of one stored event (the sweep retries if this is lost)."""
    from django_q.tasks import async_task

    async_task(PROCESS_TASK, event_id, group="webhooks")


# --- Processing ---------------------------------------------------------------------------


def webhook_event_process(*, event_id: int, force: bool = False) -> str:
    """Normalize and ingest one stored event; returns the event's resulting status.

    Idempotent: without `force`, only events still `received` are processed; with
    `force` (the admin's reprocess) any event is re-run, and the ingest's own
    constraints keep that from duplicating anything.
    """
    with transaction.atomic():
        event = (
            WebhookEvent.objects.select_for_update()
            .select_related("chip")
            .filter(pk=event_id)
            .first()
        )
        if event is None:
            return "missing"
        if not force and event.status != WebhookEvent.Status.RECEIVED:
            return event.status
        event.attempts += 1
        try:
            with transaction.atomic():
                status, error = _normalize_and_ingest(event)
        except PayloadError as exc:
            status, error = WebhookEvent.Status.INVALID, str(exc)
        except Exception as exc:
            # Kept on the event for the ops and for "reprocess"; never lost silently.
            logger.exception("webhook event %s failed", event.pk)
            status, error = WebhookEvent.Status.FAILED, f"{type(exc).__name__}: {exc}"
        event.status = status
        event.error = error[:2000]
        event.processed_at = timezone.now()
        event.save(update_fields=["status", "error", "attempts", "processed_at"])
    _count(event.provider, event.event_type, status)
    return status


def _normalize_and_ingest(event: WebhookEvent) -> tuple[str, str]:
    adapter = get_adapter(event.provider)
    results = [
        event_ingest(chip=event.chip, event=normalized, webhook_event=event)
        for normalized in adapter.parse_inbound(event.payload, event.headers or {})
    ]
    notes = "; ".join(result.detail for result in results if result.detail)
    if results and any(result.handled for result in results):
        return WebhookEvent.Status.PROCESSED, notes
    return WebhookEvent.Status.IGNORED, notes or "nothing to do"


def webhook_events_reprocess(*, event_ids: Iterable[int]) -> dict[str, int]:
    """Re-run normalization for chosen events (the admin action); counts per status."""
    counts: dict[str, int] = {}
    for event_id in event_ids:
        status = webhook_event_process(event_id=event_id, force=True)
        counts[status] = counts.get(status, 0) + 1
    return counts


def webhook_events_requeue_stuck(*, older_than: timedelta = STUCK_AFTER) -> int:
    """Enqueue again every event still `received` after `older_than` (its task was lost)."""
    cutoff = timezone.now() - older_than
    event_ids = list(
        WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED, received_at__lt=cutoff)
        .order_by("received_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for event_id in event_ids:
        webhook_event_enqueue(event_id=event_id)
    if event_ids:
        logger.warning("re-enqueued %d webhook events stuck in 'received'", len(event_ids))
    return len(event_ids)


def webhook_handshake(*, provider: str, chip_key: str, params: Mapping[str, str]) -> str:
    """Meta's GET subscription check: the challenge to echo back, or an error."""
    chip, adapter = webhook_chip_get(provider=provider, chip_key=chip_key)
    verify_handshake = getattr(adapter, "verify_handshake", None)
    if verify_handshake is None:
        raise WebhookNotFound("this provider has no GET handshake")
    challenge = verify_handshake(chip, params)
    if challenge is None:
        raise WebhookForbidden("verify token does not match")
    return challenge
