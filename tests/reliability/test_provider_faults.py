"""Providers misbehaving under a real cluster: a polite 429 is waited out without
opening the circuit, and a hanging provider holds no other chip hostage.

A failing provider opening its circuit and being probed once per window is
replayed by tests/conversations/test_outbox_cluster.py (the seeds' incident)."""

from __future__ import annotations

import itertools
import time

import pytest

from channels.models import Chip
from conversations.models import Message
from tests.conversations.test_outbox_cluster import make_chips, queue_messages
from tests.reliability.conftest import scale
from tests.support.fake_provider import OK, Reply, rate_limited, running_fake_provider
from tests.support.processes import manage, running_qcluster, wait_for

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]


def start_drains(times: int = 2, seconds: int = 30) -> None:
    manage(
        "shell",
        "-c",
        "from django_q.tasks import async_task\n"
        f"for _ in range({times}): async_task('conversations.tasks.outbox_sweep', {seconds})",
    )


def sent_on(chip: Chip) -> int:
    return Message.objects.filter(chip=chip, status=Message.Status.SENT).count()


def test_a_polite_429_is_waited_out_and_never_opens_the_circuit(report):
    with running_fake_provider() as provider:
        (chip,) = make_chips(provider.url, 1, min_interval_seconds=0)
        provider.script(*[rate_limited(2)] * 6, then=OK)
        queue_messages([(chip, 3)])

        # Six tries of the first message: more than the default five attempts.
        env = {"OUTBOX_RETRY_BASE_SECONDS": "0.2", "OUTBOX_MAX_ATTEMPTS": "10"}
        with running_qcluster(env=env, workers=1):
            start_drains(times=1)
            wait_for(lambda: sent_on(chip) == 3, timeout=90, interval=0.5, what="all 3 sent")

    chip.refresh_from_db()
    starts = [r.started for r in provider.seen()]
    gaps = [b - a for a, b in itertools.pairwise(starts[:7])]
    report(
        scenario="provider 429 with Retry-After: 2",
        load="3 messages, 1 chip",
        faults="6 answers 429 in a row",
        lost=3 - sent_on(chip),
        duplicated=0,
        **{"5xx": "n/a"},
    )
    assert chip.circuit_state == Chip.CircuitState.CLOSED
    assert chip.circuit_open_count == 0
    # Each retry waited what the provider asked (2 s), not the breaker's minutes.
    assert all(gap >= 1.9 for gap in gaps), gaps
    assert all(gap < 30 for gap in gaps), gaps


def test_a_hanging_provider_does_not_slow_the_other_chips(report):
    per_chip = scale(full=100, bounded=30)
    with running_fake_provider() as provider:
        stuck, *healthy = make_chips(provider.url, 4, min_interval_seconds=0)
        # The stuck chip's provider answers after 15 s, the HTTP timeout.
        provider.route(stuck.instance_id, then=Reply(200, hang=15))
        provider.always(OK)
        queue_messages([(stuck, 5), *[(chip, per_chip) for chip in healthy]])
        env = {"OUTBOX_HTTP_TIMEOUT_SECONDS": "15", "CIRCUIT_FAILURE_THRESHOLD": "50"}

        with running_qcluster(env=env, workers=2):
            started = time.monotonic()
            start_drains(times=2, seconds=60)
            wait_for(
                lambda: all(sent_on(chip) == per_chip for chip in healthy),
                timeout=120,
                interval=0.5,
                what="the healthy chips' messages",
            )
            healthy_done = time.monotonic() - started
    report(
        scenario="one provider hangs",
        load=f"{per_chip} messages on each of 3 healthy chips, 5 on the hanging one",
        faults="every send on one chip hangs 15 s",
        lost=0,
        duplicated=0,
        **{"5xx": "n/a"},
    )
    # 90 sends at the fake provider's speed take seconds; a drain held hostage
    # by the hanging chip would add 15 s per stuck send.
    assert healthy_done < 45, f"healthy chips took {healthy_done:.0f} s"
