"""Telling a passing database error (deadlock, lock timeout, lost connection) from a bug."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections

T = TypeVar("T")


def db_error_is_transient(exc: BaseException) -> bool:
    """Deadlock, serialization failure, lock timeout, connection lost: worth trying again.

    psycopg raises these as OperationalError subclasses and Django keeps the
    class; an IntegrityError or a ProgrammingError is a bug or a real conflict
    and is never retried.
    """
    return isinstance(exc, OperationalError | InterfaceError)


def db_retry_transient(work: Callable[[], T], *, delays: Sequence[float] | None = None) -> T:
    """Run `work` (a whole transaction) again after a transient error; re-raise the last one.

    The default waits (DB_TRANSIENT_RETRY_SECONDS) outlast a deadlock's other
    party and a database restart: a worker whose database went away for a few
    seconds finishes its task when it is back instead of failing it.
    """
    if delays is None:
        delays = settings.DB_TRANSIENT_RETRY_SECONDS
    for delay in delays:
        try:
            return work()
        except Exception as exc:
            if not db_error_is_transient(exc):
                raise
            _drop_broken_connections()
            time.sleep(delay)
    return work()


def _drop_broken_connections() -> None:
    """Close a connection the error left unusable, so the next try reconnects.

    Unlike `close_old_connections`, a healthy connection is kept (with its
    session settings) whatever its age.
    """
    for conn in connections.all(initialized_only=True):
        if conn.connection is None or not conn.errors_occurred:
            continue
        if conn.in_atomic_block or conn.is_usable():
            conn.errors_occurred = False
        else:
            conn.close()


def db_run_reusing_connection(work: Callable[[], T], *, alias: str = DEFAULT_DB_ALIAS) -> T:
    """Run `work` on the kept connection without Django's health check; once more if it was dead.

    With CONN_HEALTH_CHECKS Django sends `SELECT 1` on a reused connection
    before each request's first query: a round trip and a transaction of its
    own, on every request. Here a connection that died since the last request
    (a database restart) fails `work`'s own first statement instead; it is
    then dropped and `work` runs once more on a new connection. Only a
    connection the driver reports closed or broken is retried: any other
    error is `work`'s own. `work` must be safe to run twice after a failure
    (one transaction that either committed or did not).
    """
    conn = connections[alias]
    raw = conn.connection
    if raw is None or conn.in_atomic_block:
        # A new connection is healthy; inside a transaction there is no retrying.
        return work()
    conn.health_check_done = True
    try:
        return work()
    except (OperationalError, InterfaceError):
        if not (getattr(raw, "closed", False) or getattr(raw, "broken", False)):
            raise
    if conn.connection is raw:
        conn.close()
    return work()


@contextmanager
def db_cursor_binding_params(alias: str = DEFAULT_DB_ALIAS) -> Iterator[Any]:
    """A Django cursor whose parameters PostgreSQL binds, for the hottest statements.

    Django's psycopg cursors bind client-side: every parameter is quoted into
    the SQL text in Python (a webhook's whole JSON body, escaped character by
    character). A binding cursor sends the values beside the statement: about
    0.1 ms less CPU per webhook INSERT here. Not the default for every query
    because some SQL Django writes needs client-side binding. Still a Django
    cursor: the query log, execute wrappers and error translation apply.
    """
    conn = connections[alias]
    if conn.vendor != "postgresql":
        with conn.cursor() as cursor:
            yield cursor
        return
    from django.db.backends.postgresql.base import ServerBindingCursor

    conn.close_if_health_check_failed()
    conn.ensure_connection()
    with conn.wrap_database_errors:
        raw = ServerBindingCursor(conn.connection)
    with conn._prepare_cursor(raw) as cursor:
        yield cursor
