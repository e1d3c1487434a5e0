"""django-q2 brokers: one Redis connection pool per process, and tasks held until a time.

django-q2 builds a broker for every `async_task`, and its Redis broker a new
client with a new pool each time: a webhook paid a TCP connect, the client's
hello commands and a package-metadata scan for every enqueue (the Redis
broker, the one meant for scale, was slower than the ORM one). Here every
broker of a process shares one client; redis-py's pool is thread-safe and
starts afresh in a forked child.

django-q2 has no countdown (`async_task` takes no eta; a `Schedule` of type
ONCE waits for the scheduler, which runs every 30 s). `async_task_at` gives
one, kept by the broker itself so it is as durable as any queued task and no
process has to stay alive (or asleep) to remember it:

- ORM broker: the task row is written with its `lock` at the due time; the
  broker only hands out rows whose lock has passed (`lock < now`), exactly as
  it hides a task a worker is running. `OrderedORM` hands them out in the
  order they became due: django-q2's own ORM broker takes any due row (no
  ORDER BY), so once a hundred turns fall due together some waited behind
  tasks that became due after them.
- Redis broker: the package waits in a sorted set scored by its due time;
  each `dequeue` first moves the due ones to the queue (atomically, in one
  Lua script) and blocks no longer than until the next one is due, napping
  the last stretch of the wait in the pusher (Redis ends a block on its own
  100 ms tick). A task held while the pusher is already blocked wakes it
  through a second list the pusher blocks on too: otherwise a task due
  sooner than the block's end (up to a second) would wait for it.

A held task is late by at most the broker's poll (ORM, `poll`) or a few
milliseconds (Redis), plus whatever backlog is ahead of it.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.brokers import Broker, get_broker
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf

logger = logging.getLogger(__name__)

# Every enqueue names its cluster: without `cluster=` django-q2 uses the
# cluster of the process that enqueues, so a send kicked from an agent turn
# would wait behind the model calls on the agent's queue.


def fast_cluster() -> str:
    """The default cluster: webhook processing, statuses, takeovers, sends, periodic chores."""
    return settings.Q_CLUSTER["name"]


def agent_cluster() -> str:
    """The agent's cluster: turns, whose model call may be slow (settings: Q_AGENT_CLUSTER)."""
    return settings.Q_AGENT_CLUSTER


def enqueue_nudge(func: str, *args: Any, failure: str, **kwargs: Any) -> None:
    """`async_task` on the default cluster for work a periodic job also finds.

    A broker error is logged (`failure` says what was lost), never raised: the
    caller is often an on_commit callback whose work is already saved, and
    the sweep that covers a lost task must not cost the caller its commit.
    """
    from django_q.tasks import async_task

    try:
        async_task(func, *args, cluster=fast_cluster(), **kwargs)
    except Exception:
        logger.exception("%s", failure)


def broker_is_the_database() -> bool:
    """Whether tasks are rows of the default database (django-q2's ORM broker or OrderedORM).

    Then a task can be written in the transaction, or the very statement, of
    the work it is for. Not in django-q2's sync mode, where it runs at once.
    """
    return Conf.ORM == DEFAULT_DB_ALIAS and not Conf.SYNC and _orm_class(Conf.BROKER_CLASS)


@functools.cache
def _orm_class(broker_class: str | None) -> bool:
    return broker_class is None or issubclass(import_string(broker_class), ORM)


def queue_waiting(cluster: str) -> int:
    """Tasks of `cluster` ready for a worker and not yet taken (held ones not yet due excluded)."""
    return get_broker(cluster).queue_size()


_clients: dict[str, redis.Redis] = {}
_scripts: dict[int, Any] = {}
_lock = threading.Lock()

# KEYS[1] the queue, KEYS[2] its held tasks, KEYS[3] its wake-up list; ARGV[1]
# now (epoch seconds). Moves every due task to the queue's tail; returns the
# next due time or -1. The wake-ups are spent: the caller is about to block
# until that next due time, which already counts every held task.
_PROMOTE = """
redis.call('DEL', KEYS[3])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 500)
for _, package in ipairs(due) do
    redis.call('RPUSH', KEYS[1], package)
    redis.call('ZREM', KEYS[2], package)
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if nxt[2] then return nxt[2] end
return '-1'
"""
# The longest a dequeue blocks: django-q2's own Redis broker waits 1 s.
_BLOCK_SECONDS = 1.0
# Redis ends a blocking command's timeout on its timer tick (`hz`, 10 by
# default: every 100 ms), not at the timeout: a 10 ms BLPOP returns after
# 100 ms, a 200 ms one after 200 to 300 ms. Relying on it made every held
# task up to a tick late (a resumed turn started 90 ms after its window in
# the reply-latency bench). So the last stretch of a wait is napped here,
# in naps this long.
_REDIS_TICK = 0.1
_NAP_SECONDS = 0.01


class PooledRedis(Redis):
    @staticmethod
    def get_connection(list_key: str | None = None) -> redis.Redis:
        settings = Conf.REDIS
        key = repr(settings)
        client = _clients.get(key)
        if client is None:
            with _lock:
                client = _clients.get(key)
                if client is None:
                    if isinstance(settings, str):
                        client = redis.from_url(settings)
                    else:
                        client = redis.Redis(**settings)
                    _clients[key] = client
        return client

    @property
    def held_key(self) -> str:
        return f"{self.list_key}:held"

    @property
    def wake_key(self) -> str:
        return f"{self.list_key}:wake"

    def enqueue_at(self, package: str, due: datetime) -> int:
        pipe = self.connection.pipeline(transaction=False)
        pipe.zadd(self.held_key, {package: due.timestamp()})
        # A pusher blocked since before this task was held must recompute its
        # wake-up time; one pending wake-up is enough, however many are held.
        pipe.rpush(self.wake_key, b"")
        pipe.ltrim(self.wake_key, 0, 0)
        return pipe.execute()[0]

    def dequeue(self) -> list[tuple[None, bytes]] | None:
        now = time.time()
        promote = _scripts.get(id(self.connection))
        if promote is None:
            promote = _scripts[id(self.connection)] = self.connection.register_script(_PROMOTE)
        next_due = float(
            promote(keys=[self.list_key, self.held_key, self.wake_key], args=[repr(now)])
        )
        block = _BLOCK_SECONDS
        if next_due >= 0:
            wait = next_due - time.time()
            if wait < 2 * _REDIS_TICK:
                # Too close for BLPOP's timeout: nap here, looking at the queue
                # between naps, so a task queued meanwhile is not kept waiting.
                popped_now = self.connection.lpop(self.list_key)
                if popped_now is not None:
                    return [(None, popped_now)]
                time.sleep(min(max(wait, 0.001), _NAP_SECONDS))
                return None
            # Redis ends the block up to a tick late: ask for a tick less, and
            # nap the rest (above).
            block = min(block, wait - _REDIS_TICK)
        popped = self.connection.blpop([self.list_key, self.wake_key], block)
        if popped and popped[0].decode() == self.list_key:
            return [(None, popped[1])]
        return None  # nothing came, or a task was held: django-q2's pusher calls again

    def held_size(self) -> int:
        return self.connection.zcard(self.held_key)


class OrderedORM(ORM):
    """django-q2's ORM broker, handing out the task that became due first (then the oldest)."""

    def dequeue(self) -> list[tuple[int, str]] | None:
        queue = self.get_connection()
        due = list(
            queue.filter(key=self.list_key, lock__lt=timezone.now()).order_by("lock", "pk")[
                : Conf.BULK
            ]
        )
        if not due:
            time.sleep(Conf.POLL)  # an empty queue: spare the CPU, as django-q2 does
            return None
        # The lock moves to the retry time, as in django-q2: another cluster
        # that read the same row updates nothing and skips it.
        return [
            (task.pk, task.payload)
            for task in due
            if queue.filter(pk=task.pk, lock=task.lock).update(lock=self.timeout(task))
        ]


class _HeldUntil:
    """What `async_task(broker=…)` needs of a broker, enqueueing for later."""

    def __init__(self, broker: Broker, due: datetime) -> None:
        self.broker = broker
        self.due = due
        self.list_key = broker.list_key

    def enqueue(self, package: str) -> Any:
        if isinstance(self.broker, PooledRedis):
            return self.broker.enqueue_at(package, self.due)
        if isinstance(self.broker, ORM):
            row = self.broker.get_connection().create(
                key=self.broker.list_key or Conf.CLUSTER_NAME, payload=package, lock=self.due
            )
            return row.pk
        raise NotImplementedError(f"{type(self.broker).__name__} cannot hold a task until later")


def async_task_at(
    due: datetime, func: str, *args: Any, cluster: str | None = None, **kwargs: Any
) -> str:
    """`async_task`, handed to a worker no earlier than `due` (see the module docstring)."""
    from django_q.tasks import async_task

    if cluster is not None:
        kwargs["cluster"] = cluster
    if Conf.SYNC or kwargs.get("sync"):
        # django-q2's sync mode (tests) runs the task in the caller, with no
        # broker to hold it: the caller waits, which is what sync means.
        delay = (due - timezone.now()).total_seconds()
        if delay > 0:
            time.sleep(delay)
        return async_task(func, *args, **kwargs)
    broker = get_broker(cluster)
    return async_task(func, *args, broker=_HeldUntil(broker, due), **kwargs)
