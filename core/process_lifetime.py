"""Worker processes never outlive the process that supervises them.

A `kill -9` of `manage.py qcluster` used to leave django-q2's sentinel and
workers running, still taking tasks and schedules: a worker nobody sees in
development, one that survives its supervisor in a container. Linux's
parent-death signal ties each process to its parent: the kernel signals the
child when the parent dies, however it dies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
# Set by bin/run-dev: its web server and cluster die with it too.
ENV_FLAG = "DIE_WITH_PARENT"


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> bool:
    """Have the kernel send `sig` to this process when `parent` exits; False off Linux.

    `parent` is the pid the caller knows its parent to be: if it is no longer
    our parent by the time the request takes effect, it already died and
    nobody would signal us, so we signal ourselves. (Comparing with pid 1
    instead would kill every child of a cluster that runs as pid 1, as the
    main process of a container does.)
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return True


# The forking process's pid, recorded just before each fork (the child
# inherits the value): the child's parent as it should be.
_forking_pid = 0


def _remember_forking_pid() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


def _child_dies_with_parent() -> None:
    die_with_parent(_forking_pid, signal.SIGTERM)


def task_cluster_process(argv: list[str] | None = None) -> bool:
    """Whether this process is `manage.py qcluster`, which forks the task workers."""
    return "qcluster" in (sys.argv if argv is None else argv)[1:2]


def process_lifetime_setup(argv: list[str] | None = None) -> None:
    """Called once per process at start-up (CoreConfig.ready).

    In a cluster every forked child (sentinel, workers, monitor, pusher)
    dies with the process that forked it; under bin/run-dev the main
    process dies with the script as well.
    """
    if os.environ.get(ENV_FLAG) == "1":
        die_with_parent(os.getppid(), signal.SIGTERM)
    if task_cluster_process(argv) and sys.platform.startswith("linux"):
        os.register_at_fork(before=_remember_forking_pid, after_in_child=_child_dies_with_parent)
