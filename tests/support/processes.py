"""Real processes for the tests that prove the platform works end to end."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import IO
from urllib.parse import quote

from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def test_database_url() -> str:
    """The URL of the database the running test uses (pytest-django's test_… database)."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "postgres")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_for(
    predicate: Callable[[], object], *, timeout: float, interval: float = 0.25, what: str = ""
) -> object:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


@contextmanager
def running_qcluster(
    *, env: dict[str, str] | None = None, workers: int = 2, agent_workers: int = 1
) -> Iterator[subprocess.Popen]:
    """Run the platform's clusters as separate processes against the test database.

    The default cluster (`manage.py qcluster`, `workers` workers; yielded)
    and, unless `agent_workers` is 0, the agent's cluster beside it
    (`Q_CLUSTER_NAME=<Q_NAME>-agent`), as `bin/run-dev` and compose run them.
    Tests using it must be `django_db(transaction=True)` so that the rows they
    write are committed and visible to the clusters.
    """
    with ExitStack() as stack:
        process = stack.enter_context(_cluster_process(env=env, workers=workers))
        if agent_workers:
            stack.enter_context(_cluster_process(env=env, workers=agent_workers, agent=True))
        yield process


@contextmanager
def _cluster_process(
    *, env: dict[str, str] | None, workers: int, agent: bool = False
) -> Iterator[subprocess.Popen]:
    process_env = platform_env({"Q_WORKERS": str(workers), **(env or {})})
    if agent:
        process_env["Q_AGENT_WORKERS"] = str(workers)
        process_env["Q_CLUSTER_NAME"] = f"{process_env.get('Q_NAME', 'sdr')}-agent"
    with process_log("qcluster_agent" if agent else "qcluster") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=BASE_DIR,
            env=process_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: we stop workers too
        )
        process.log_name = log.name  # type: ignore[attr-defined]  # for process_output
        try:
            yield process
        finally:
            stop_process_group(process)


def platform_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a platform process run against the test's database."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "TEST_DATABASE_URL": test_database_url(),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }


@contextmanager
def process_log(name: str) -> Iterator[IO[str]]:
    """A temporary file for a process's output, removed afterwards.

    SHOW_<NAME>_LOG=1 (SHOW_QCLUSTER_LOG, SHOW_GUNICORN_LOG) prints it to
    stderr once the process is done, for a test that fails mysteriously.
    """
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open for the process lifetime
        mode="w+", prefix=f"{name}-", suffix=".log", delete=False
    )
    try:
        yield log
    finally:
        log.seek(0)
        output = log.read()
        log.close()
        os.unlink(log.name)
        if os.environ.get(f"SHOW_{name.upper()}_LOG"):
            sys.stderr.write(output)


def process_output(process: subprocess.Popen) -> str:
    """What a process started by `running_qcluster` has written so far."""
    return Path(process.log_name).read_text()  # type: ignore[attr-defined]


def stop_process_group(process: subprocess.Popen, *, sig: int = signal.SIGTERM) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children first), whatever session or group they moved to."""
    found = [
        int(child)
        for child in subprocess.run(
            ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
        ).stdout.split()
    ]
    return found + [grandchild for child in found for grandchild in descendants(child)]


def kill_all(pids: list[int]) -> None:
    """SIGKILL each of `pids` still running; for cleaning up after a test, pass or fail."""
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def process_alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_gunicorn(*, env: dict[str, str] | None = None, workers: int = 2) -> Iterator[str]:
    """Serve the platform with gunicorn (production's server) on an ephemeral port.

    Yields its base URL once it answers. Same database as `running_qcluster`.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with process_log("gunicorn") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--timeout",
                "60",
            ],
            cwd=BASE_DIR,
            env=platform_env(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(lambda: _answers(f"{base}/health"), timeout=60, what="gunicorn to answer")
            yield base
        finally:
            stop_process_group(process)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):  # noqa: S310 - local URL
            return True
    except urllib.error.HTTPError:
        return True  # a 503 still means the server is up
    except OSError:
        return False


def manage(*args: str, env: dict[str, str] | None = None) -> str:
    """Run `manage.py` as its own process against the test database; returns its output."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=platform_env(env),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout
