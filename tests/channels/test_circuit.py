"""The per-chip circuit breaker's state machine, on real chip rows."""

from datetime import timedelta

import pytest
from django.utils import timezone

from channels import circuit
from channels.models import Chip
from tests.factories.channels import ChipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _breaker_settings(settings):
    settings.CIRCUIT_FAILURE_THRESHOLD = 5
    settings.CIRCUIT_BACKOFF_BASE_SECONDS = 300
    settings.CIRCUIT_BACKOFF_MAX_SECONDS = 3600


def fail(chip, times, now):
    changes = [circuit.circuit_record_failure(chip, now=now) for _ in range(times)]
    return changes[-1]


def test_opens_on_the_fifth_consecutive_failure_with_a_five_minute_wait():
    chip = ChipFactory()
    now = timezone.now()

    assert not fail(chip, 4, now).opened
    assert chip.circuit_state == Chip.CircuitState.CLOSED
    change = fail(chip, 1, now)

    assert change.opened
    assert chip.circuit_state == Chip.CircuitState.OPEN
    assert chip.circuit_retry_at == now + timedelta(seconds=300)
    assert chip.circuit_open_count == 1
    assert not circuit.circuit_allows(chip, now=now + timedelta(seconds=299))
    assert circuit.circuit_allows(chip, now=now + timedelta(seconds=300))


def test_a_success_in_between_resets_the_count():
    chip = ChipFactory()
    now = timezone.now()
    fail(chip, 4, now)
    circuit.circuit_record_success(chip)
    fail(chip, 4, now)
    assert chip.circuit_state == Chip.CircuitState.CLOSED


def test_each_failed_probe_doubles_the_wait_up_to_the_cap():
    chip = ChipFactory()
    now = timezone.now()
    fail(chip, 5, now)
    waits = []
    for _ in range(6):
        probe_at = chip.circuit_retry_at
        assert circuit.circuit_begin_send(chip, now=probe_at, probe_lease_seconds=60)
        assert chip.circuit_state == Chip.CircuitState.HALF_OPEN
        # While the probe is out nobody else may send.
        assert not circuit.circuit_allows(chip, now=probe_at + timedelta(seconds=59))
        change = circuit.circuit_record_failure(chip, now=probe_at)
        assert change.reopened
        waits.append((chip.circuit_retry_at - probe_at).total_seconds())
    assert waits == [600, 1200, 2400, 3600, 3600, 3600]
    assert chip.circuit_open_count == 1


def test_a_successful_probe_closes_the_circuit():
    chip = ChipFactory()
    now = timezone.now()
    fail(chip, 5, now)
    assert circuit.circuit_begin_send(chip, now=chip.circuit_retry_at, probe_lease_seconds=60)
    circuit.circuit_record_success(chip)
    assert chip.circuit_state == Chip.CircuitState.CLOSED
    assert chip.consecutive_failures == 0
    assert not circuit.circuit_begin_send(chip, now=now, probe_lease_seconds=60)


def test_late_failures_while_open_do_not_push_the_probe_away():
    chip = ChipFactory()
    now = timezone.now()
    fail(chip, 5, now)
    retry_at = chip.circuit_retry_at
    assert not fail(chip, 3, now + timedelta(seconds=1)).opened
    assert chip.circuit_retry_at == retry_at


def test_reset_closes_an_open_circuit_in_the_database():
    chip = ChipFactory(
        circuit_state=Chip.CircuitState.OPEN,
        consecutive_failures=9,
        circuit_retry_at=timezone.now() + timedelta(hours=1),
    )
    circuit.circuit_reset(chip=chip)
    chip.refresh_from_db()
    assert chip.circuit_state == Chip.CircuitState.CLOSED
    assert chip.consecutive_failures == 0
    assert chip.circuit_retry_at is None
