"""The per-chip circuit breaker, kept in the database so every worker shares it.

closed --(N consecutive failures)--> open --(backoff elapsed)--> half_open
half_open --(probe succeeds)--> closed;  half_open --(probe fails)--> open, backoff doubled.

The seeds' incident re-probed every 15 s and the number was banned: here the
first wait is 5 minutes and doubles (capped), and only one probe may be in
flight, because the worker that takes it marks the chip half-open while it
holds the chip's row lock. While the circuit is open the chip's messages stay
queued; they are never burned as failures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from channels.models import Chip

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CircuitChange:
    opened: bool = False
    reopened: bool = False
    retry_at: datetime | None = None


def circuit_backoff_seconds(*, failures: int) -> float:
    """The wait before the next probe, given the consecutive failures so far."""
    threshold = settings.CIRCUIT_FAILURE_THRESHOLD
    exponent = max(0, failures - threshold)
    # Cap the exponent too, so a chip failing for weeks cannot overflow a float.
    seconds = settings.CIRCUIT_BACKOFF_BASE_SECONDS * (2 ** min(exponent, 30))
    return min(seconds, settings.CIRCUIT_BACKOFF_MAX_SECONDS)


def circuit_allows(chip: Chip, *, now: datetime) -> bool:
    """Whether a send may be attempted on this chip now (a probe counts)."""
    if chip.circuit_state == Chip.CircuitState.CLOSED:
        return True
    return chip.circuit_retry_at is None or chip.circuit_retry_at <= now


def circuit_begin_send(chip: Chip, *, now: datetime, probe_lease_seconds: float) -> bool:
    """Called with the chip row locked, right before a send. True when the send is a probe.

    Mutates `chip` in memory; the caller saves it in the same transaction, so
    a second worker sees the circuit half-open with a future retry time and
    keeps away until the probe's result is recorded (or its lease ran out).
    """
    if chip.circuit_state == Chip.CircuitState.CLOSED:
        return False
    chip.circuit_state = Chip.CircuitState.HALF_OPEN
    chip.circuit_retry_at = now + timedelta(seconds=probe_lease_seconds)
    return True


def circuit_record_success(chip: Chip) -> None:
    """The provider accepted a message: close the circuit. `chip` is locked by the caller."""
    if chip.circuit_state != Chip.CircuitState.CLOSED:
        logger.info("circuit closed for chip %s after a successful probe", chip.pk)
    chip.circuit_state = Chip.CircuitState.CLOSED
    chip.consecutive_failures = 0
    chip.circuit_retry_at = None


def circuit_record_failure(chip: Chip, *, now: datetime) -> CircuitChange:
    """The provider refused or could not be reached. `chip` is locked by the caller."""
    chip.consecutive_failures += 1
    state = chip.circuit_state
    if state == Chip.CircuitState.HALF_OPEN:
        backoff = circuit_backoff_seconds(failures=chip.consecutive_failures)
        chip.circuit_state = Chip.CircuitState.OPEN
        chip.circuit_retry_at = now + timedelta(seconds=backoff)
        logger.warning("circuit probe failed for chip %s; next probe in %.0fs", chip.pk, backoff)
        return CircuitChange(reopened=True, retry_at=chip.circuit_retry_at)
    if (
        state == Chip.CircuitState.CLOSED
        and chip.consecutive_failures >= settings.CIRCUIT_FAILURE_THRESHOLD
    ):
        backoff = circuit_backoff_seconds(failures=chip.consecutive_failures)
        chip.circuit_state = Chip.CircuitState.OPEN
        chip.circuit_opened_at = now
        chip.circuit_retry_at = now + timedelta(seconds=backoff)
        chip.circuit_open_count += 1
        logger.error(
            "circuit opened for chip %s after %s consecutive failures; next probe in %.0fs",
            chip.pk,
            chip.consecutive_failures,
            backoff,
        )
        return CircuitChange(opened=True, retry_at=chip.circuit_retry_at)
    # Already open: a send that was in flight when the circuit opened failed
    # too. It moves nothing, or late answers would keep pushing the probe away.
    return CircuitChange()


def circuit_reset(*, chip: Chip) -> Chip:
    """Ops closed the circuit by hand (admin "Reset circuit")."""
    with transaction.atomic():
        locked = Chip.objects.select_for_update(no_key=True).get(pk=chip.pk)
        locked.circuit_state = Chip.CircuitState.CLOSED
        locked.consecutive_failures = 0
        locked.circuit_retry_at = None
        locked.next_send_at = None
        locked.save(
            update_fields=[
                "circuit_state",
                "consecutive_failures",
                "circuit_retry_at",
                "next_send_at",
                "updated_at",
            ]
        )
    return locked
