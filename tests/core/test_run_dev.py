"""`make run`'s server script on the zero-setup default (SQLite, ORM broker).

Starts the real web server and qcluster the way a developer does, waits for
the admin login page and a fresh worker heartbeat in /health, then presses
Ctrl-C and expects both processes gone.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.support.processes import BASE_DIR, wait_for

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - local URL
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def test_run_dev_serves_admin_and_a_live_worker_then_stops_on_ctrl_c(tmp_path):
    port = _free_port()
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
        )
    base = f"http://127.0.0.1:{port}"
    children: list[str] = []
    try:
        wait_for(lambda: _get(f"{base}/admin/login/")[0] == 200, timeout=60, what="the admin login")
        assert b"SDR Ops" in _get(f"{base}/admin/login/")[1]

        def worker_ok() -> bool:
            status, body = _get(f"{base}/health")
            return status == 200 and json.loads(body)["checks"]["worker"]["status"] == "ok"

        wait_for(worker_ok, timeout=90, interval=1, what="a fresh worker heartbeat")
        health = json.loads(_get(f"{base}/health")[1])
        assert health["status"] == "ok", health
        children = _descendants(process.pid)
        assert len(children) >= 3, "expected the web server and a cluster with workers"
    finally:
        # Ctrl-C in a terminal signals the foreground process group.
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError("run-dev did not stop on Ctrl-C:\n" + log.read_text()) from None

    assert _get(f"{base}/health")[0] == 0, "the web server still answers after Ctrl-C"
    wait_for(
        lambda: not any(os.path.exists(f"/proc/{pid}") for pid in children),
        timeout=15,
        what="web and worker processes to exit",
    )


def _descendants(pid: int) -> list[str]:
    found = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    return found + [grandchild for child in found for grandchild in _descendants(int(child))]
