"""Real processes for the tests that prove the platform works end to end."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
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
    *, env: dict[str, str] | None = None, workers: int = 2
) -> Iterator[subprocess.Popen]:
    """Run `manage.py qcluster` as a separate process against the test database.

    Tests using it must be `django_db(transaction=True)` so that the rows they
    write are committed and visible to the cluster.
    """
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open for the process lifetime
        mode="w+", prefix="qcluster-", suffix=".log", delete=False
    )
    process_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "TEST_DATABASE_URL": test_database_url(),
        "Q_WORKERS": str(workers),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=BASE_DIR,
        env=process_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: we stop workers too
    )
    try:
        yield process
    finally:
        stop_process_group(process)
        log.seek(0)
        output = log.read()
        log.close()
        os.unlink(log.name)
        if os.environ.get("SHOW_QCLUSTER_LOG"):
            sys.stderr.write(output)


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
