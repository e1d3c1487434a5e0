"""Layers point one way (docs/architecture.md): each app imports only the apps to its left.

A lower app reaches a higher one through a hook the higher app registers in
its AppConfig.ready (channels.ingest_handler, channels.quarantine's hooks,
conversations.outbox's). The imports listed in KNOWN_DEBTS predate this test;
the list may only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["core", "channels", "conversations", "agent", "campaigns"]

KNOWN_DEBTS = {
    ("channels/admin.py", "conversations"),
    ("channels/pacing.py", "conversations"),
    ("core/dashboard.py", "channels"),
    ("core/demo.py", "agent"),
    ("core/demo.py", "channels"),
    ("core/demo.py", "conversations"),
    ("core/selectors.py", "conversations"),
}


def _upward_imports() -> set[tuple[str, str]]:
    found = set()
    for rank, app in enumerate(ORDER):
        higher = set(ORDER[rank + 1 :])
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in higher:
                        found.add((str(path.relative_to(ROOT)), top))
    return found


def test_no_app_imports_an_app_to_its_right():
    assert _upward_imports() - KNOWN_DEBTS == set()


def test_the_known_debts_are_still_there():
    # A debt paid off leaves this list, so it cannot come back unseen.
    assert _upward_imports() >= KNOWN_DEBTS
