"""CPU time by process group, read from /proc: where a bench run's cores went.

A process's counters include what its reaped children used (cutime and
cstime), so a worker or a PostgreSQL backend that exits between two readings
still counts, in its parent's total. Linux only.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _service(cmdline: str) -> str | None:
    """The shared service a process outside the bench's tree belongs to, if any."""
    program = os.path.basename(cmdline.split(" ", 1)[0])
    # The postmaster by its path; backends and auxiliaries retitle themselves "postgres: …".
    if program in ("postgres", "postgres:"):
        return "postgresql"
    if program == "redis-server":
        return "redis"
    return None


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds with reaped children) of `pid`; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: the fields after it follow the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return int(fields[1]), (utime + stime + cutime + cstime) / _TICK


def _read(path: str) -> str:
    try:
        return Path(path).read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_by_group(root: int, group_of: Callable[[str, str], str]) -> Counter[str]:
    """CPU seconds so far of `root`'s process tree by `group_of(cmdline, environ)`,
    plus PostgreSQL and Redis as whole groups."""
    stats = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    totals: Counter[str] = Counter()
    for pid, (_, seconds) in stats.items():
        cmdline = _read(f"/proc/{pid}/cmdline")
        service = _service(cmdline)
        if service is not None:
            totals[service] += seconds
            continue
        # Descendants of `root` only; `root` itself is the bench's own process.
        ancestor = pid
        while ancestor in stats and ancestor != root:
            ancestor = stats[ancestor][0]
        if ancestor != root:
            continue
        if pid == root:
            totals["bench"] += seconds
        else:
            totals[group_of(cmdline, _read(f"/proc/{pid}/environ"))] += seconds
    return totals


def cpu_used(before: Counter[str], after: Counter[str]) -> dict[str, float]:
    """CPU seconds each group used between two readings."""
    return {group: after[group] - before[group] for group in sorted(after.keys() | before.keys())}
