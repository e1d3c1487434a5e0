"""The Redis broker reuses one connection per process; both brokers hold a task until it is due."""

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
import redis
import redis.connection
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage
from django_q.tasks import async_task

from core.brokers import async_task_at, broker_is_the_database
from core.task_relay import task_pushes_flush
from tests.channels.webhooks import chip_for, load_fixture_json, post_webhook
from tests.core.conftest import REDIS_URL


def test_q_broker_redis_selects_the_pooled_broker():
    # Settings are evaluated once per process: read them as a fresh one does.
    result = subprocess.run(
        [sys.executable, "-c", "from config.settings import base; print(base.Q_CLUSTER)"],
        env={**os.environ, "Q_BROKER": "redis", "REDIS_URL": REDIS_URL},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "'broker_class': 'core.brokers.PooledRedis'" in result.stdout
    assert f"'redis': '{REDIS_URL}'" in result.stdout


@pytest.mark.django_db
def test_three_webhooks_queue_three_tasks_over_at_most_one_new_connection(
    client, redis_broker, monkeypatch, django_capture_on_commit_callbacks
):
    queue, key = redis_broker
    opened = []
    on_connect = redis.connection.AbstractConnection.on_connect

    def counting_on_connect(self):
        opened.append(self)
        return on_connect(self)

    monkeypatch.setattr(redis.connection.AbstractConnection, "on_connect", counting_on_connect)
    chip = chip_for("zapi")
    for n in range(3):
        body = load_fixture_json("zapi", "received__text")
        body["messageId"] = f"pooled-{n}"
        with django_capture_on_commit_callbacks(execute=True):
            assert post_webhook(client, chip, body).status_code == 200
    task_pushes_flush()  # what the relay thread would send within a few milliseconds

    assert queue.llen(key) == 3
    assert len(opened) <= 1
    assert get_broker().connection is get_broker().connection


def _dequeue_until_task(broker, *, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = broker.dequeue()
        if tasks:
            return tasks
    raise AssertionError("no task handed out")


def test_redis_holds_a_task_until_it_is_due(redis_broker):
    queue, key = redis_broker
    queue.delete(f"{key}:held")
    due = timezone.now() + timedelta(seconds=0.8)

    async_task_at(due, "math.floor", 1.5)

    assert queue.llen(key) == 0
    assert queue.zcard(f"{key}:held") == 1
    [(_, package)] = _dequeue_until_task(get_broker(), timeout=5)
    handed_out = timezone.now()
    assert handed_out >= due
    assert (handed_out - due).total_seconds() < 0.5  # the dequeue woke up for it
    assert SignedPackage.loads(package)["args"] == (1.5,)
    assert queue.zcard(f"{key}:held") == 0
    queue.delete(f"{key}:held")


@pytest.mark.parametrize("ahead", [0.03, 0.25])
def test_redis_hands_out_a_held_task_on_time_not_on_its_timer_tick(redis_broker, ahead):
    """Redis ends a BLPOP's timeout on its 100 ms tick: a task due in 30 ms came 70 ms late."""
    queue, key = redis_broker
    queue.delete(f"{key}:held", f"{key}:wake")
    broker = get_broker()
    due = timezone.now() + timedelta(seconds=ahead)
    async_task_at(due, "math.floor", ahead)

    [(_, package)] = _dequeue_until_task(broker, timeout=5)

    late = (timezone.now() - due).total_seconds()
    assert 0 <= late < 0.05
    assert SignedPackage.loads(package)["args"] == (ahead,)
    queue.delete(f"{key}:held", f"{key}:wake")


def test_redis_napping_for_a_held_task_still_hands_out_one_queued_meanwhile(redis_broker):
    queue, key = redis_broker
    queue.delete(f"{key}:held", f"{key}:wake")
    broker = get_broker()
    async_task_at(timezone.now() + timedelta(seconds=3), "math.floor", 9.5)
    # Due in 0.15 s: the pusher naps for it instead of blocking.
    async_task_at(timezone.now() + timedelta(seconds=0.15), "math.floor", 8.5)
    assert broker.dequeue() is None
    queued_at = time.monotonic()
    async_task("math.floor", 7.5)

    [(_, package)] = _dequeue_until_task(broker, timeout=5)

    assert SignedPackage.loads(package)["args"] == (7.5,)
    assert time.monotonic() - queued_at < 0.1
    queue.delete(f"{key}:held", f"{key}:wake")


@pytest.mark.django_db
def test_orm_holds_a_task_until_it_is_due():
    due = timezone.now() + timedelta(seconds=0.8)

    async_task_at(due, "math.floor", 2.5)

    [row] = OrmQ.objects.all()
    assert row.lock == due
    broker = get_broker()
    [(_, package)] = _dequeue_until_task(broker, timeout=5)
    assert timezone.now() >= due
    assert SignedPackage.loads(package)["args"] == (2.5,)


@pytest.mark.django_db
def test_orm_hands_out_tasks_in_the_order_they_became_due():
    # Held in another order than their due times, like turns whose windows
    # end in another order than they were scheduled.
    now = timezone.now()
    for seconds in (0.3, 0.1, 0.2):
        async_task_at(now + timedelta(seconds=seconds), "math.floor", seconds)
    async_task("math.floor", 0.0)  # due at once
    time.sleep(0.35)

    broker = get_broker()
    handed_out = [
        SignedPackage.loads(package)["args"][0]
        for _ in range(4)
        for _, package in _dequeue_until_task(broker, timeout=5)
    ]

    assert handed_out == [0.0, 0.1, 0.2, 0.3]
    assert broker.dequeue() is None  # each was handed out once


def test_the_ordered_orm_broker_is_still_the_database(monkeypatch):
    # Intake writes a webhook's task in the event's own statement only then.
    assert Conf.BROKER_CLASS == "core.brokers.OrderedORM"
    assert broker_is_the_database()
    monkeypatch.setattr(Conf, "BROKER_CLASS", "core.brokers.PooledRedis")
    assert not broker_is_the_database()


def test_redis_wakes_a_blocked_pusher_for_a_task_held_after_it_blocked(redis_broker):
    """The pusher blocks up to a second; a task held meanwhile must not wait for that."""
    queue, key = redis_broker
    queue.delete(f"{key}:held", f"{key}:wake")
    broker = get_broker()
    returned: list[float] = []

    def pusher_loop() -> None:
        _dequeue_until_task(broker, timeout=5)
        returned.append(time.monotonic())

    pusher = threading.Thread(target=pusher_loop)
    pusher.start()
    time.sleep(0.3)  # blocked, with nothing held: for a whole second
    due = timezone.now() + timedelta(seconds=0.1)
    held_at = time.monotonic()
    async_task_at(due, "math.floor", 3.5)
    pusher.join(timeout=5)

    assert returned, "the held task was never handed out"
    # Due 0.1 s after it was held; the block it interrupted had 0.7 s left.
    assert returned[0] - held_at < 0.5
    assert queue.zcard(f"{key}:held") == 0
    assert queue.llen(f"{key}:wake") == 0  # spent by the next look, never piling up
    queue.delete(f"{key}:held", f"{key}:wake")
