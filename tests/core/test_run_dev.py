"""`make run`'s server script on the zero-setup default (SQLite, ORM broker).

Starts the real web server and qcluster the way a developer does, waits for
the admin login page and a fresh worker heartbeat in /health, then stops it
as a developer would (Ctrl-C) or as a crash would (kill -9 of the script),
and expects no process left behind either way.
"""

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import (
    BASE_DIR,
    descendants,
    free_port,
    kill_all,
    process_alive,
    wait_for,
)

pytestmark = pytest.mark.slow


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - local URL
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def _default_signals() -> None:
    # A suite started as a background job inherits SIGINT ignored, and a
    # non-interactive bash cannot trap a signal ignored on entry: give the
    # script the disposition a terminal would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass
class RunDev:
    process: subprocess.Popen
    base: str
    log: Path
    children: list[int]


WORKER_CHECKS = ("worker", "agent_worker")


@pytest.fixture
def run_dev(tmp_path) -> Iterator[RunDev]:
    """bin/run-dev serving with a live worker; everything it started is gone afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PY": sys.executable,
        "RUN_ADDR": f"127.0.0.1:{port}",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("TEST_DATABASE_URL", None)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--no-input", "-v0"], cwd=BASE_DIR, env=env, check=True)
    subprocess.run([*manage, "seed_demo"], cwd=BASE_DIR, env=env, check=True, capture_output=True)

    log = tmp_path / "run-dev.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["bin/run-dev"],
            cwd=BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_signals,
        )
    base = f"http://127.0.0.1:{port}"
    started = RunDev(process=process, base=base, log=log, children=[])
    try:
        wait_for(lambda: _get(f"{base}/admin/login/")[0] == 200, timeout=60, what="the admin login")

        def workers_ok() -> bool:
            status, body = _get(f"{base}/health")
            checks = json.loads(body)["checks"] if status == 200 else {}
            # Both clusters: the default one and the agent's.
            return all(checks.get(name, {}).get("status") == "ok" for name in WORKER_CHECKS)

        wait_for(workers_ok, timeout=90, interval=1, what="a fresh heartbeat of both clusters")
        started.children = descendants(process.pid)
        assert len(started.children) >= 3, "expected the web server and a cluster with workers"
        yield started
    finally:
        # Pass or fail, nothing this test started may outlive it.
        leftovers = [pid for pid in [process.pid, *started.children] if process_alive(pid)]
        kill_all([*leftovers, *descendants(process.pid)])


def test_run_dev_serves_admin_and_a_live_worker_then_stops_on_ctrl_c(run_dev):
    assert b"SDR Ops" in _get(f"{run_dev.base}/admin/login/")[1]
    assert json.loads(_get(f"{run_dev.base}/health")[1])["status"] == "ok"
    # runserver's request lines go through the redacting handler too.
    key, token = "run-dev-chip-key-0123456789", "run-dev-verify-token-0123456789"
    query = f"hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1"
    assert _get(f"{run_dev.base}/webhooks/meta/{key}/?{query}")[0] == 404

    # Ctrl-C in a terminal signals the foreground process group.
    os.killpg(run_dev.process.pid, signal.SIGINT)
    try:
        run_dev.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        log = run_dev.log.read_text()
        raise AssertionError("run-dev did not stop on Ctrl-C:\n" + log) from None
    assert run_dev.process.returncode == 0, "Ctrl-C must end `make run` without an error"

    assert _get(f"{run_dev.base}/health")[0] == 0, "the web server still answers after Ctrl-C"
    log = run_dev.log.read_text()
    assert "/webhooks/meta/[redacted]/" in log
    assert key not in log
    assert token not in log
    wait_for(
        lambda: not any(process_alive(pid) for pid in run_dev.children),
        timeout=15,
        what="web and worker processes to exit",
    )


def test_a_killed_run_dev_leaves_no_web_server_or_worker_behind(run_dev):
    os.kill(run_dev.process.pid, signal.SIGKILL)
    run_dev.process.wait(timeout=10)

    wait_for(
        lambda: not any(process_alive(pid) for pid in run_dev.children),
        timeout=30,
        what="web server, cluster and workers to die with run-dev",
    )
    assert _get(f"{run_dev.base}/health")[0] == 0
