"""Outbound messages over several chips while the cluster is SIGKILLed five times
(the whole cluster, or one worker) and restarted: every message reaches the
provider, and only a message in flight at a kill may reach it twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections import Counter
from contextlib import ExitStack

import pytest
import redis

from conversations.models import Message
from tests.conversations.test_outbox_cluster import make_chips, queue_messages
from tests.reliability.conftest import scale
from tests.support.fake_provider import Reply, running_fake_provider
from tests.support.processes import descendants, manage, running_qcluster, wait_for

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

KILLS = 5
WORKERS = 2
REDIS_URL = "redis://127.0.0.1:6379/9"


def broker_env(broker: str) -> dict[str, str]:
    env = {"Q_NAME": f"reliability-{broker}"}
    if broker == "redis":
        env |= {"Q_BROKER": "redis", "REDIS_URL": REDIS_URL}
    return env


def sent() -> int:
    return Message.objects.filter(status=Message.Status.SENT).count()


def start_drains(env: dict[str, str]) -> None:
    """Enqueue two long drains through the cluster's own broker, as the sweep would."""
    manage(
        "shell",
        "-c",
        "from django_q.tasks import async_task\n"
        "for _ in range(2): async_task('conversations.tasks.outbox_sweep', 20)",
        env=env,
    )


@pytest.mark.parametrize("broker", ["orm", "redis"])
def test_kill_9_five_times_loses_nothing_and_resends_only_what_was_in_flight(broker, report):
    total = scale(full=2000, bounded=300)
    env = broker_env(broker)
    if broker == "redis":
        redis.Redis.from_url(REDIS_URL).flushdb()
    rng = random.Random(5)

    with running_fake_provider() as provider:
        # Slow enough answers that each kill lands with sends in flight.
        provider.always(Reply(200, hang=0.02))
        chips = make_chips(provider.url, 5, min_interval_seconds=0)
        share = total // len(chips)
        bodies = queue_messages([(chip, share) for chip in chips])
        total = share * len(chips)
        whole_cluster_kills = 0

        with ExitStack() as stack:

            def start() -> subprocess.Popen:
                cluster = stack.enter_context(running_qcluster(env=env, workers=WORKERS))
                start_drains(env)
                return cluster

            cluster = start()
            for kill in range(1, KILLS + 1):
                target = total * kill // (KILLS + 2)
                wait_for(lambda t=target: sent() >= t, timeout=180, what=f"{target} sent")
                if kill % 2:
                    # The whole cluster at once (parent, sentinel, workers), then a restart.
                    os.killpg(cluster.pid, signal.SIGKILL)
                    cluster.wait(timeout=10)
                    whole_cluster_kills += 1
                    cluster = start()
                else:
                    # One process of the cluster (a worker, the monitor or the pusher);
                    # the sentinel starts another in its place.
                    workers = descendants(cluster.pid)
                    os.kill(rng.choice(workers[1:] or workers), signal.SIGKILL)
                    start_drains(env)
            wait_for(lambda: sent() == total, timeout=300, interval=1, what="all sent")

    # A worker killed while writing its request leaves a cut body, which no
    # provider would accept as a message: only whole sends count.
    per_body = Counter(
        request.body["text"]
        for request in provider.seen()
        if isinstance(request.body, dict) and "text" in request.body
    )
    lost = len(set(bodies) - set(per_body))
    duplicated = sum(n - 1 for n in per_body.values())
    report(
        scenario=f"worker crash ({broker} broker)",
        load=f"{total} outbound messages, 5 chips, {WORKERS} workers",
        faults=f"{KILLS} SIGKILLs ({whole_cluster_kills} of the whole cluster), restarts",
        lost=lost,
        duplicated=duplicated,
        **{"5xx": "n/a"},
    )
    assert lost == 0
    assert not Message.objects.exclude(status=Message.Status.SENT).exists()
    # At least once only for a send whose worker died between the provider's
    # answer and the record: at most one per worker in flight per kill.
    assert duplicated <= KILLS * WORKERS
