"""The relay thread pushes handed-over packages in batches; a process's exit loses none it held."""

import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import redis
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from channels.models import WebhookEvent
from core import task_relay
from core.task_relay import task_push_soon, task_pushes_flush
from tests.channels.webhooks import chip_for, load_fixture_json, post_webhook
from tests.core.conftest import REDIS_URL

CLUSTER = "intake-broker-test"


def _rpush_calls(queue: redis.Redis) -> int:
    return queue.info("commandstats").get("cmdstat_rpush", {}).get("calls", 0)


def _wait_for_length(queue: redis.Redis, key: str, length: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while queue.llen(key) < length and time.monotonic() < deadline:
        time.sleep(0.01)
    assert queue.llen(key) == length


@pytest.fixture
def relay_empty():
    """A relay of its own: no package or lingering thread left over from another test."""
    task_relay._relay.reset()
    yield
    task_pushes_flush()
    task_relay._relay.reset()


def test_the_first_package_after_a_quiet_spell_is_not_held(redis_broker, relay_empty, settings):
    queue, key = redis_broker
    settings.TASK_PUSH_LINGER_SECONDS = 30

    task_push_soon("alone", CLUSTER)

    _wait_for_length(queue, key, 1)  # long before the linger is over
    assert queue.lrange(key, 0, -1) == [b"alone"]


def test_packages_that_keep_coming_leave_together_once_per_linger(
    redis_broker, relay_empty, settings
):
    queue, key = redis_broker
    settings.TASK_PUSH_LINGER_SECONDS = 1.0  # far longer than handing four over takes
    pushes_before = _rpush_calls(queue)
    task_push_soon("package-0", CLUSTER)
    _wait_for_length(queue, key, 1)

    for n in range(1, 5):
        task_push_soon(f"package-{n}", CLUSTER)

    assert queue.llen(key) == 1  # handed over: the caller did not wait for Redis
    _wait_for_length(queue, key, 5)
    assert queue.lrange(key, 0, -1) == [f"package-{n}".encode() for n in range(5)]
    assert _rpush_calls(queue) - pushes_before == 2


def test_redis_unreachable_loses_the_batch_to_the_sweep_and_says_so(
    redis_broker, relay_empty, settings, monkeypatch, caplog
):
    settings.TASK_PUSH_LINGER_SECONDS = 30
    monkeypatch.setattr(Conf, "REDIS", "redis://127.0.0.1:9/0")  # nothing listens there

    task_push_soon("package", CLUSTER)  # returns: nothing waits for Redis in the caller
    with caplog.at_level(logging.ERROR, logger="core.task_relay"):
        assert task_pushes_flush() == 0

    assert "1 task(s) for intake-broker-test not pushed" in caplog.text
    assert "sweep" in caplog.text


def test_past_the_cap_the_oldest_are_dropped_and_counted(redis_broker, settings, caplog):
    queue, key = redis_broker
    settings.TASK_PUSH_LINGER_SECONDS = 30
    relay = task_relay._Relay(max_pending=4)
    relay.add("first", CLUSTER)
    _wait_for_length(queue, key, 1)  # sent at once; the thread now lingers

    for n in range(6):
        relay.add(f"package-{n}", CLUSTER)
    with caplog.at_level(logging.ERROR, logger="core.task_relay"):
        assert relay.flush() == 4

    assert queue.lrange(key, 1, -1) == [f"package-{n}".encode() for n in range(2, 6)]
    assert "2 task(s) dropped while 4 waited for Redis" in caplog.text
    relay.close()


def test_a_process_that_exits_sends_what_it_still_holds(redis_broker):
    queue, key = redis_broker
    script = textwrap.dedent(
        f"""
        import django
        django.setup()
        from core.task_relay import task_push_soon
        for n in range(3):
            task_push_soon(f"held-{{n}}", "{CLUSTER}")
        """
    )
    # A linger far longer than the process lives: only the exit hook can send them.
    env = {
        **os.environ,
        "Q_BROKER": "redis",
        "REDIS_URL": REDIS_URL,
        "TASK_PUSH_LINGER_SECONDS": "60",
    }
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)

    assert queue.lrange(key, 0, -1) == [b"held-0", b"held-1", b"held-2"]


def test_a_forked_child_does_not_send_its_parents_packages_again(
    redis_broker, relay_empty, settings
):
    queue, key = redis_broker
    settings.TASK_PUSH_LINGER_SECONDS = 30
    task_push_soon("first", CLUSTER)
    _wait_for_length(queue, key, 1)  # sent at once; the thread now lingers
    task_push_soon("parent", CLUSTER)

    pid = os.fork()
    if pid == 0:  # the child: sends only its own, then leaves without pytest's teardown
        code = 1
        try:
            task_push_soon("child", CLUSTER)
            code = 0 if task_pushes_flush() == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert queue.lrange(key, 0, -1) == [b"first", b"child"]
    assert task_pushes_flush() == 1
    assert queue.lrange(key, 0, -1) == [b"first", b"child", b"parent"]


class _RedisHoldingReplies:
    """A Redis on 127.0.0.1 that answers RPUSH only once released (a stalled or far Redis)."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.pushed: list[bytes] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self._server.getsockname()[1]}/0"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        connection, _ = self._server.accept()
        stream = connection.makefile("rb")
        while True:
            header = stream.readline()
            if not header:
                return
            command = []
            for _ in range(int(header[1:])):  # RESP: *<count>, then $<length> and the bytes
                length = int(stream.readline()[1:])
                command.append(stream.read(length + 2)[:-2])
            if command[0].upper() == b"RPUSH":
                self.released.wait()
                self.pushed += command[2:]
                connection.sendall(b":%d\r\n" % len(self.pushed))
            elif command[0].upper() == b"HELLO":  # the protocol version the client asks for
                version = int(command[1]) if len(command) > 1 else 2
                connection.sendall(b"%%1\r\n$5\r\nproto\r\n:%d\r\n" % version)
            else:  # the client's other hello commands
                connection.sendall(b"+OK\r\n")

    def close(self) -> None:
        self.released.set()
        self._server.close()


@pytest.mark.django_db
def test_a_webhook_is_answered_while_redis_holds_the_push(
    client, redis_broker, relay_empty, monkeypatch, django_capture_on_commit_callbacks, caplog
):
    stalled = _RedisHoldingReplies()
    monkeypatch.setattr(Conf, "REDIS", stalled.url)
    body = load_fixture_json("zapi", "received__text")
    body["messageId"] = "stalled-redis-1"

    with django_capture_on_commit_callbacks(execute=True):
        response = post_webhook(client, chip_for("zapi"), body)

    # Answered with its task still unsent: a push in the request would wait here.
    assert response.status_code == 200
    assert stalled.pushed == []
    stalled.released.set()
    deadline = time.monotonic() + 10
    while not stalled.pushed and time.monotonic() < deadline:
        time.sleep(0.01)
    [package] = stalled.pushed
    event = WebhookEvent.objects.get(dedupe_key__endswith="stalled-redis-1")
    assert SignedPackage.loads(package.decode())["args"] == (event.pk,)
    assert task_pushes_flush() == 0
    # The push got its answer: no request gave up on Redis meanwhile.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    stalled.close()


# Transactional: the relay thread may take the packages before the flush does,
# and its own connection commits what it pushes.
@pytest.mark.django_db(transaction=True)
def test_a_broker_other_than_redis_takes_each_package_by_its_own_enqueue(relay_empty, settings):
    settings.TASK_PUSH_LINGER_SECONDS = 30
    cluster = settings.Q_CLUSTER["name"]  # the test settings' ORM broker

    task_push_soon("first", cluster)
    task_push_soon("second", cluster)

    task_pushes_flush()  # what the thread has not taken yet; waits for what it sends
    queued = OrmQ.objects.filter(key=cluster).order_by("id")
    assert list(queued.values_list("payload", flat=True)) == ["first", "second"]


def test_a_reset_ends_the_thread_that_served_before(redis_broker, relay_empty, settings):
    queue, key = redis_broker
    settings.TASK_PUSH_LINGER_SECONDS = 30
    task_push_soon("before", CLUSTER)
    _wait_for_length(queue, key, 1)
    old_thread = task_relay._relay._thread

    task_relay._relay.reset()

    # Lingering, it would have woken later and sent what the new state holds.
    old_thread.join(timeout=5)
    assert not old_thread.is_alive()
