"""Task packages handed to a thread of the process and pushed to their queue a few at a time.

For work whose durable record is already committed, so that its task on a
Redis queue only says "do this soon": a webhook delivery is safe once its
row is stored, and the sweep re-queues an event whose task never reached a
worker (channels.services.webhook_events_requeue_stuck). Pushing that task
inside the request cost a round trip to Redis per delivery; measured here
(bench/README.md, "Sixth pass"), one RPUSH takes about 110 µs of CPU between
the web process, the kernel and Redis, and one RPUSH of four packages about
16 µs per package.

`task_push_soon` adds the package to the process's pending list and returns
at once. A thread of the process sends the first one at once and, while more
keep coming, what came meanwhile every TASK_PUSH_LINGER_SECONDS, each
queue's packages in one RPUSH: a task reaches its queue at most that much
later, and never blocks the request, not even while Redis is unreachable
(each failed batch is logged, and the sweep re-queues those events). What a
process holds when it exits normally (a gunicorn worker's restart or
shutdown) is sent by an exit hook; what it holds when it is killed, at most
a linger's worth, waits for the sweep, as a push lost between the commit and
the RPUSH always did.

A forked child starts with nothing pending and no thread: its parent sends
what it held.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import deque

from django.conf import settings
from django_q.brokers import get_broker
from django_q.brokers.redis_broker import Redis

from core.task_packages import task_push

logger = logging.getLogger(__name__)

# While Redis is unreachable the pending packages wait here; past this many the
# oldest are dropped (their events stay `received`, for the sweep).
MAX_PENDING = 10_000
# How long the exit hook waits for a batch the thread is sending.
_EXIT_WAIT_SECONDS = 5.0


class _Relay:
    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self._max_pending = max_pending
        self.start_over()

    def start_over(self) -> None:
        """Nothing pending, no thread: a forked child's state (the parent sends what it held)."""
        self._lock = threading.Lock()
        self._pending: deque[tuple[str, str]] = deque(maxlen=self._max_pending)
        self._dropped = 0
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        # One batch on the wire at a time: the thread's and the exit hook's.
        self._sending = threading.Lock()

    def reset(self) -> None:
        """Drop what is pending and end the thread (tests, between cases)."""
        # Left lingering, the old thread would wake later and send what the new
        # state holds. Not in the fork hook: a child may inherit these events'
        # locks held by a thread it does not have.
        self._stop.set()
        self._wake.set()
        self.start_over()

    def add(self, package: str, cluster: str) -> None:
        with self._lock:
            if self._thread is None:
                self._start()
            first = not self._pending
            if len(self._pending) == self._pending.maxlen:
                self._dropped += 1  # the deque drops the oldest
            self._pending.append((cluster, package))
        if first:
            # The thread takes the later ones with this one (flush takes all under the lock).
            self._wake.set()

    def _start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(self._wake, self._stop), name="task-relay", daemon=True
        )
        self._thread.start()

    def _run(self, wake: threading.Event, stop: threading.Event) -> None:
        # The events are this thread's own: after a reset a new thread serves the relay.
        while not stop.is_set():
            wake.wait()
            wake.clear()
            if self._thread is not threading.current_thread():
                return
            # The first package after a quiet spell leaves at once. While more
            # keep coming, one push per linger takes all that came meanwhile:
            # each wake of this thread costs the process more CPU than a
            # package does (waits cut short at exit).
            while self._send() and not stop.wait(settings.TASK_PUSH_LINGER_SECONDS):
                pass

    def flush(self) -> int:
        """Send every pending package now; how many were handed to their queue."""
        return self._send(sent_only=True)

    def _send(self, *, sent_only: bool = False) -> int:
        """Send every pending package; how many were sent, or taken if not `sent_only`."""
        with self._sending:
            with self._lock:
                batch = list(self._pending)
                self._pending.clear()
                dropped, self._dropped = self._dropped, 0
            if dropped:
                logger.error(
                    "task relay: %d task(s) dropped while %d waited for Redis; "
                    "the sweep re-queues their events",
                    dropped,
                    self._max_pending,
                )
            by_cluster: dict[str, list[str]] = {}
            for cluster, package in batch:
                by_cluster.setdefault(cluster, []).append(package)
            sent = 0
            for cluster, packages in by_cluster.items():
                try:
                    _push(cluster, packages)
                except Exception:
                    logger.exception(
                        "task relay: %d task(s) for %s not pushed; the sweep re-queues their events"
                        " later",
                        len(packages),
                        cluster,
                    )
                else:
                    sent += len(packages)
            return sent if sent_only else len(batch)

    def close(self) -> None:
        """At exit: stop the thread, wait for the batch it is sending, send the rest."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_EXIT_WAIT_SECONDS)
        self.flush()


def _push(cluster: str, packages: list[str]) -> None:
    broker = get_broker(cluster)
    if isinstance(broker, Redis):
        broker.connection.rpush(broker.list_key, *packages)
        return
    for package in packages:
        task_push(package, cluster)


_relay = _Relay()
os.register_at_fork(after_in_child=_relay.start_over)
atexit.register(_relay.close)


def task_push_soon(package: str, cluster: str) -> None:
    """Hand `package` over for `cluster`'s queue; it is pushed within a linger, in a batch."""
    _relay.add(package, cluster)


def task_pushes_flush() -> int:
    """Push what this process holds now (tests, and before a deliberate exit); how many."""
    return _relay.flush()
