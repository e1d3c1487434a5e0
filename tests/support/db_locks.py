"""Another connection holding row locks, as another worker would, for lock-contention tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def row_locked_elsewhere(
    sql: str, pk: int, *, release_after: float | None = None
) -> Iterator[None]:
    """Another connection holds a row lock (as another worker would) until the block ends."""
    held, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql, [pk])
                held.set()
                release.wait(release_after if release_after is not None else 30)
        except BaseException as exc:  # re-raised by the test below
            errors.append(exc)
            held.set()
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    try:
        yield
    finally:
        release.set()
        thread.join(10)
    assert errors == []


def lock_timeout(ms: int) -> None:
    """Make this connection give up waiting for a lock after `ms` (a transient error)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET lock_timeout = '{int(ms)}ms'")
