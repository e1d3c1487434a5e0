"""A cluster's sentinel and workers die with the qcluster process, however it dies."""

import os
import signal
import subprocess
import sys

import pytest

from tests.support.processes import (
    BASE_DIR,
    descendants,
    kill_all,
    process_alive,
    running_qcluster,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_kill_9_of_qcluster_takes_its_sentinel_and_workers_with_it():
    with running_qcluster(workers=2) as cluster:
        # Sentinel, two workers, monitor, pusher (and the scheduler's guard).
        children = wait_for(
            lambda: (found := descendants(cluster.pid)) and len(found) >= 4 and found,
            timeout=60,
            what="the cluster's sentinel and workers",
        )
        try:
            os.kill(cluster.pid, signal.SIGKILL)
            cluster.wait(timeout=10)
            wait_for(
                lambda: not any(process_alive(pid) for pid in children),
                timeout=30,
                what="sentinel and workers to die with their parent",
            )
        finally:
            kill_all([pid for pid in children if process_alive(pid)])


PID_ONE_CLUSTER = """
import os, sys, time
from core.process_lifetime import process_lifetime_setup
assert os.getpid() == 1  # as a container's main process
process_lifetime_setup(["manage.py", "qcluster"])
child = os.fork()
if child == 0:
    time.sleep(0.5)
    os._exit(0)
_, status = os.waitpid(child, 0)
print("signaled" if os.WIFSIGNALED(status) else "exited")
"""


def test_a_cluster_running_as_pid_1_keeps_its_children():
    # A container runs `qcluster` as pid 1: its children's parent is pid 1 by right.
    done = subprocess.run(
        ["unshare", "--pid", "--fork", sys.executable, "-c", PID_ONE_CLUSTER],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.strip() == "exited", done.stderr
