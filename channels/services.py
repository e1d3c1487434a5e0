"""Webhook intake and processing: the writes behind the webhook view, the task and the admin.

Intake (`webhook_receive`) authenticates, stores one `WebhookEvent` per
delivery and queues its processing, in one commit; it does nothing slow.
Processing (`webhook_event_process`) normalizes the stored payload through the
provider's adapter and ingests the events. The stored event, not the broker,
is the unit of work: a lost task is found again by `webhook_events_requeue_stuck`.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from channels.chip_cache import chip_for_webhook
from channels.event_store import QueuedTask, webhook_event_insert
from channels.ingest_handler import event_apply
from channels.intake_limits import intake_admit
from channels.models import Chip, Provider, WebhookEvent
from channels.providers.base import PayloadError, ProviderAdapter, get_adapter
from core.brokers import broker_is_the_database, fast_cluster
from core.db import db_error_is_transient, db_retry_transient
from core.metrics import counter_inc
from core.task_packages import task_package, task_packages_direct, task_push
from core.task_relay import task_push_soon

logger = logging.getLogger(__name__)

PROCESS_TASK = "channels.tasks.process_webhook_event"
PROCESS_DELIVERY_TASK = "channels.tasks.process_webhook_delivery"
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


class WebhookWrongInstance(WebhookError):
    """Authenticated, but the body is another provider instance's: not this chip's to keep."""

    status_code = 422
    code = "wrong_instance"


class WebhookRateLimited(WebhookError):
    """Over the chip's intake limits: the provider should deliver again after `retry_after`."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Intake:
    event_id: int
    created: bool


# Every outcome webhook_events_total may carry; labels are never taken from a body.
_OUTCOMES = frozenset(
    {
        "accepted",
        "duplicate",
        "invalid",
        "unauthenticated",
        "forbidden",
        "wrong_instance",
        "rate_limited",
        "processed",
        "ignored",
        "failed",
    }
)


# Provider.values builds a new list at every read; intake asks twice per delivery.
_PROVIDERS = frozenset(Provider.values)


def _count(provider: str, event: str, outcome: str) -> None:
    """Count a delivery with bounded labels: known provider, documented event, fixed outcome."""
    if provider in _PROVIDERS:
        event = get_adapter(provider).metric_event(event)
    else:
        provider, event = "other", "other" if event else ""
    labels = {
        "provider": provider,
        "event": event,
        "outcome": outcome if outcome in _OUTCOMES else "other",
    }
    counter_inc("webhook_events_total", labels)


def webhook_chip_get(*, provider: str, chip_key: str) -> tuple[Chip, ProviderAdapter]:
    """The chip a webhook URL names, with its adapter; WebhookNotFound otherwise."""
    if provider not in _PROVIDERS:
        raise WebhookNotFound("unknown provider")
    chip = chip_for_webhook(provider=provider, chip_key=chip_key)
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
    """Authenticate and store one webhook delivery and queue its processing (one commit).

    Authentication (the URL key, then the provider's signature or token, on
    the raw bytes) and the chip's intake limits come before the body is
    parsed. A retried delivery (same dedupe key) returns the stored event and
    enqueues nothing.
    """
    chip, adapter = webhook_chip_get(provider=provider, chip_key=chip_key)
    try:
        webhook_authenticate(chip=chip, adapter=adapter, headers=headers, body=body)
        refusal = intake_admit(chip_id=chip.pk, size=len(body))
        if refusal is not None:
            raise WebhookRateLimited(refusal.reason, retry_after=refusal.retry_after)
    except WebhookError as exc:
        _count(provider, "", exc.code)
        raise
    kept_headers = _headers_to_keep(headers)

    try:
        payload, verbatim = _payload_parse(body)
    except PayloadError as exc:
        event = _reject(chip=chip, payload={}, headers=kept_headers, body=body, error=str(exc))
        raise WebhookInvalid(str(exc), event_id=event.pk) from exc
    if adapter.names_other_instance(chip, payload):
        # Another instance's delivery sent to this chip's URL (a provider
        # configured with the wrong URL): not ours to keep. The credential was
        # right, so the answer must not say it was not.
        _count(provider, "", WebhookWrongInstance.code)
        named = str(payload.get(adapter.instance_field))[:100]
        logger.warning(
            "webhook for another instance at chip %s: the body names %r, the chip is %r",
            chip.pk,
            named,
            chip.instance_id,
        )
        raise WebhookWrongInstance(
            f"the body is for instance {named!r}, which is not this chip's instance: "
            "set that instance's webhook to its own chip's URL; nothing was stored"
        )
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
    event_type = event_type[:100]
    event_id = _event_store(
        chip_id=chip.pk,
        provider=provider,
        event_type=event_type,
        dedupe_key=dedupe_key,
        payload=payload,
        headers=kept_headers,
        payload_json=body if verbatim else None,
    )
    created = event_id is not None
    if event_id is None:
        event_id = WebhookEvent.objects.values_list("pk", flat=True).get(
            chip=chip, dedupe_key=dedupe_key
        )
    outcome = "accepted" if created else "duplicate"
    _count(provider, event_type, outcome)
    # DEBUG, like django-q's per-task lines (core/logging.py): every delivery is
    # a row in the admin and a count in webhook_events_total, and a line for
    # each at INFO cost about 6 % of a delivery's instructions and buried what
    # needs reading.
    logger.debug(
        "webhook received provider=%s chip=%s event=%s id=%s outcome=%s",
        provider,
        chip.pk,
        event_type,
        event_id,
        outcome,
    )
    return Intake(event_id=event_id, created=created)


def _event_store(**values: Any) -> int | None:
    """Store a new delivery and queue its processing in one commit; None for a duplicate.

    With the ORM broker the task row is written with the event: on PostgreSQL
    in the same statement (one round trip), elsewhere in the same transaction;
    never an event without its task or a task without its event. Other brokers
    are not the database: the task is pushed after the commit, and if that
    push is lost the sweep finds the event still `received`.
    """
    if broker_is_the_database():
        dedupe_key = values["dedupe_key"]
        if dedupe_key and connection.vendor == "postgresql":
            # The event's id is not known before the statement runs, so the task
            # names the delivery by its (chip, dedupe key), unique once stored.
            chip_id = values["chip_id"]
            cluster = fast_cluster()
            package = task_package(
                PROCESS_DELIVERY_TASK,
                chip_id,
                dedupe_key,
                cluster=cluster,
                name=f"webhook {chip_id} {dedupe_key}",
                group="webhooks",
                save=False,
            )
            return webhook_event_insert(QueuedTask(key=cluster, package=package), **values)
        with transaction.atomic():
            event_id = webhook_event_insert(**values)
            if event_id is not None:
                webhook_event_enqueue(event_id=event_id)
        return event_id
    # One statement in autocommit: one round trip, one commit. The task is only
    # a nudge once the row is stored: a thread of the process pushes it, with
    # those of the next deliveries (core/task_relay.py).
    event_id = webhook_event_insert(**values)
    if event_id is not None:
        transaction.on_commit(
            lambda: webhook_event_enqueue(event_id=event_id, soon=True), robust=True
        )
    return event_id


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


# The only ways a UTF-8 JSON text yields a character PostgreSQL cannot store: a
# \u0000 or \uD800-\uDFFF escape, or a surrogate's UTF-8 bytes (json decodes
# bytes with "surrogatepass").
_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\xed[\xa0-\xbf]")


def payload_load(body: bytes) -> Any:
    """The body as a JSON value PostgreSQL can store; PayloadError when it is not one.

    Refuses what would crash later instead of now: nesting beyond
    WEBHOOK_MAX_JSON_DEPTH (Python's recursion limit in json, our readers and
    the database driver), and NaN/Infinity (not JSON; jsonb refuses them).
    """
    return _payload_parse(body)[0]


def _payload_parse(body: bytes) -> tuple[Any, bool]:
    """`payload_load`'s value, and whether `body` is itself a JSON text of it PostgreSQL reads.

    True for UTF-8 without a byte order mark and with nothing the value had
    to be cleaned of: then the body can be stored as it came.
    """
    try:
        # What json.loads does with bytes, with one decoder kept for every call.
        value = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except PayloadError:
        raise
    except RecursionError as exc:
        raise PayloadError("JSON nested too deeply") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"body is not JSON: {exc}") from exc
    max_depth = settings.WEBHOOK_MAX_JSON_DEPTH
    if (
        b"\x00" not in body  # UTF-8: json reads UTF-16 and UTF-32 too
        and body.count(b"{") + body.count(b"[") <= max_depth
        # Each alternative starts with one of these; `in` is far cheaper than the
        # search, and `\u` alone is in every body that escapes its accents.
        and not (
            (b"\\u0000" in body or b"\\ud" in body or b"\\uD" in body or b"\xed" in body)
            and _UNSTORABLE.search(body)
        )
    ):
        # Neither nested too deep nor holding what PostgreSQL refuses: the
        # common case skips walking the whole value (a third of intake's parsing).
        return value, not body.startswith(codecs.BOM_UTF8)
    return _storable(value, max_depth=max_depth), False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # 1e999 parses as Infinity, which neither JSON nor jsonb can hold.
        raise PayloadError("number out of range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def _storable(value: Any, max_depth: int = 8, _depth: int = 0) -> Any:
    """The JSON value PostgreSQL can store: no NUL characters, no lone surrogates.

    jsonb and text reject both; a provider's odd byte must not turn into a 5xx
    (the provider would retry it forever). Containers nested deeper than
    `max_depth` and infinite numbers raise PayloadError (the recursion stays shallow).
    """
    if isinstance(value, str):
        return value.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "")
    if isinstance(value, dict | list):
        if _depth >= max_depth:
            raise PayloadError(f"JSON nested deeper than {max_depth} levels")
        if isinstance(value, dict):
            return {
                _storable(key): _storable(item, max_depth, _depth + 1)
                for key, item in value.items()
            }
        return [_storable(item, max_depth, _depth + 1) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        # 1e999 parses as Infinity, which neither JSON nor jsonb can hold.
        raise PayloadError("number out of range")
    return value


def webhook_event_enqueue(*, event_id: int, soon: bool = False) -> None:
    """Queue the processing of one stored event (the sweep retries if this is lost).

    `soon` hands the task to the process's relay thread instead of pushing it
    here (core/task_relay.py): for the webhook request, which answers first.
    """
    cluster = fast_cluster()
    if not task_packages_direct():
        from django_q.tasks import async_task

        async_task(PROCESS_TASK, event_id, group="webhooks", cluster=cluster, save=False)
        return
    package = task_package(
        PROCESS_TASK,
        event_id,
        cluster=cluster,
        name=f"webhook event {event_id}",
        group="webhooks",
        save=False,
    )
    if soon:
        task_push_soon(package, cluster)
    else:
        task_push(package, cluster)


# --- Processing ---------------------------------------------------------------------------


def webhook_event_process(*, event_id: int, force: bool = False) -> str:
    """Normalize and ingest one stored event; returns the event's resulting status.

    Idempotent: without `force`, only events still `received` are processed; with
    `force` (the admin's reprocess) any event is re-run, and the ingest's own
    constraints keep that from duplicating anything.

    A transient database error (a deadlock with a worker writing on the same
    chip, a lock timeout, a lost connection) is retried; if it persists the
    event stays `received`, for the sweep, instead of failing a lead's message.
    """

    def claim_and_process() -> str:
        if not force:
            # Committed at once, apart from the processing: the sweep tells a
            # task that was taken up and died from one still waiting in line.
            _claim(event_id)
        return db_retry_transient(lambda: _process_once(event_id=event_id, force=force))

    return _or_left_for_sweep(claim_and_process, f"webhook event {event_id}")


def _or_left_for_sweep(work: Callable[[], str], what: str) -> str:
    """`work()`, or `received` when a transient database error outlasted its retries.

    The event then waits for the sweep instead of failing a lead's message.
    """
    try:
        return work()
    except Exception as exc:
        if not db_error_is_transient(exc):
            raise
        logger.warning("%s left for the sweep: %s", what, type(exc).__name__)
        return WebhookEvent.Status.RECEIVED


def webhook_delivery_process(*, chip_id: int, dedupe_key: str) -> str:
    """`webhook_event_process` for the event a chip stored under `dedupe_key`.

    What intake queues on PostgreSQL with the ORM broker, where the task is
    written in the event's own statement, before its id is known.
    """

    def find_and_process() -> str:
        event_id = db_retry_transient(
            lambda: (
                WebhookEvent.objects.filter(chip_id=chip_id, dedupe_key=dedupe_key)
                .values_list("pk", flat=True)
                .first()
            )
        )
        if event_id is None:
            return "missing"
        return webhook_event_process(event_id=event_id)

    # The lookup rides out a database outage like the processing itself.
    return _or_left_for_sweep(find_and_process, f"webhook delivery {dedupe_key!r}")


def _claim(event_id: int) -> None:
    db_retry_transient(
        lambda: WebhookEvent.objects.filter(
            pk=event_id, status=WebhookEvent.Status.RECEIVED
        ).update(claimed_at=timezone.now())
    )


def _process_once(*, event_id: int, force: bool) -> str:
    with transaction.atomic():
        # Only the event row: locking the joined chip too deadlocked with the
        # agent inserting a reply on the same chip (FOR KEY SHARE on it).
        event = (
            WebhookEvent.objects.select_for_update(of=("self",))
            .select_related("chip")
            .filter(pk=event_id)
            .first()
        )
        if event is None:
            return "missing"
        if not force and event.status != WebhookEvent.Status.RECEIVED:
            return event.status
        if _never_parsed(event):
            # Nothing to normalize: its error (not JSON, too deep, …) stays the
            # reason, not what the parser would say of the empty payload.
            return event.status
        event.attempts += 1
        try:
            with transaction.atomic():
                status, error = _normalize_and_ingest(event)
        except PayloadError as exc:
            status, error = WebhookEvent.Status.INVALID, str(exc)
        except Exception as exc:
            if db_error_is_transient(exc):
                raise  # the whole transaction is tried again
            # Kept on the event for the ops and for "reprocess"; never lost silently.
            logger.exception("webhook event %s failed", event.pk)
            status, error = WebhookEvent.Status.FAILED, f"{type(exc).__name__}: {exc}"
        event.status = status
        event.error = error[:2000]
        event.processed_at = timezone.now()
        event.save(update_fields=["status", "error", "attempts", "processed_at"])
    _count(event.provider, event.event_type, status)
    return status


def _never_parsed(event: WebhookEvent) -> bool:
    """Refused at intake before its body became JSON (`_reject` keeps an empty payload)."""
    return event.status == WebhookEvent.Status.INVALID and event.payload == {}


def _normalize_and_ingest(event: WebhookEvent) -> tuple[str, str]:
    adapter = get_adapter(event.provider)
    results = [
        event_apply(chip=event.chip, event=normalized, webhook_event=event)
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


def webhook_events_requeue_stuck(*, now: datetime | None = None) -> int:
    """Queue again the events whose processing task was lost; never one still in line.

    Lost is: taken up by a worker that did not finish it within
    WEBHOOK_CLAIM_STALE_SECONDS (the worker died, or the database went away
    for longer than the worker's retries), or never taken up at all within
    WEBHOOK_TASK_LOST_SECONDS of being queued (the broker dropped it). A
    backlog waiting in the queue is left alone, so the sweep cannot amplify
    it; each re-queue restarts the event's clock.
    """
    now = now or timezone.now()
    claim_stale = now - timedelta(seconds=settings.WEBHOOK_CLAIM_STALE_SECONDS)
    task_lost = now - timedelta(seconds=settings.WEBHOOK_TASK_LOST_SECONDS)
    taken_up = Q(claimed_at__isnull=False, claimed_at__gte=F("queued_at"))
    lost = (taken_up & Q(claimed_at__lt=claim_stale)) | (~taken_up & Q(queued_at__lt=task_lost))
    event_ids = list(
        WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED)
        .filter(lost)
        .order_by("queued_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    if not event_ids:
        return 0
    WebhookEvent.objects.filter(pk__in=event_ids).update(queued_at=now)
    for event_id in event_ids:
        webhook_event_enqueue(event_id=event_id)
    logger.warning("re-enqueued %d webhook events whose task was lost", len(event_ids))
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
