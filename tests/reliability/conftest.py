"""The reliability suite: bad days replayed against real processes.

`make reliability` runs it at full size (RELIABILITY_FULL=1); `make test`
(and so CI) runs the same scenarios at a bounded size. Each scenario adds a
row (load, faults, lost, duplicated, 5xx) to a table printed at the end of
the run and written to $RELIABILITY_REPORT when set.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import BASE_DIR

FULL = os.environ.get("RELIABILITY_FULL") == "1"
ROWS: list[dict[str, Any]] = []


def scale(*, full: int, bounded: int) -> int:
    """The size of a scenario: the issue's at full size, a CI-sized one otherwise."""
    return full if FULL else bounded


@pytest.fixture
def report():
    def add(**row: Any) -> None:
        ROWS.append(row)

    return add


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not ROWS:
        return
    columns = ["scenario", "load", "faults", "lost", "duplicated", "5xx"]
    terminalreporter.section("reliability")
    terminalreporter.write_line(" | ".join(columns))
    for row in ROWS:
        terminalreporter.write_line(" | ".join(str(row.get(c, "")) for c in columns))
    path = os.environ.get("RELIABILITY_REPORT")
    if path:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=BASE_DIR,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        Path(path).write_text(
            json.dumps(
                {
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "commit": commit,
                    "full": FULL,
                    "rows": ROWS,
                },
                indent=2,
            )
        )
