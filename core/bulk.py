"""Bulk writes on PostgreSQL: COPY rows into a temporary stage, then set-based SQL.

The ORM's `bulk_create` builds one parameter per cell in Python (seconds for
100,000 rows), and correlating 100,000 rows to their new neighbours with
per-row subqueries leaves the plan to statistics that a big insert in the same
transaction has just made stale. A stage avoids both: COPY is the fastest way
in, the stage is ANALYZEd so the planner knows its size, and every later step
is one INSERT … SELECT or UPDATE … FROM joined on keys. The number of
statements is fixed whatever the row count.

Only for PostgreSQL (`bulk_available()`); callers keep an ORM path for the
zero-setup SQLite default. Stages live until the transaction ends, so every
function here must run inside `transaction.atomic()`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Model
from django.db.models.fields import NOT_PROVIDED, Field


def bulk_available() -> bool:
    return connection.vendor == "postgresql"


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _logged(cursor: Any, sql: str) -> Any:
    # COPY does not go through execute(): log it like one statement, so
    # assertNumQueries and the bench's query counts see it.
    debug_sql = getattr(cursor, "debug_sql", None)
    return debug_sql(sql) if debug_sql is not None else nullcontext()


def stage_rows(
    *, prefix: str, columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[Any]]
) -> str:
    """A temporary table (dropped at commit) holding `rows`, analysed; its quoted name.

    `columns` are (name, PostgreSQL type) pairs; JSON goes in as text.
    Three statements: CREATE, COPY, ANALYZE.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("stage_rows needs a transaction: the stage is dropped at commit")
    table = _quote(f"{prefix}_{uuid.uuid4().hex[:12]}")
    names = ", ".join(_quote(name) for name, _ in columns)
    definition = ", ".join(f"{_quote(name)} {kind}" for name, kind in columns)
    copy_sql = f"COPY {table} ({names}) FROM STDIN"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {table} ({definition}) ON COMMIT DROP")
        with _logged(cursor, copy_sql), cursor.cursor.copy(copy_sql) as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(f"ANALYZE {table}")
    return table


def _default(field: Field, *, now: datetime) -> Any:
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        value = now
    else:
        value = field.get_default()
    return field.get_db_prep_save(value, connection)


def insert_select(
    model: type[Model],
    *,
    expressions: Mapping[str, str],
    values: Mapping[str, Any] | None = None,
    from_sql: str,
    params: Sequence[Any] = (),
    on_conflict: str = "",
    now: datetime,
) -> int:
    """INSERT INTO model's table … SELECT … FROM `from_sql`; the number of rows inserted.

    Every concrete column is written, as the ORM would: `expressions` give SQL
    for some columns (by attname, e.g. "s.lead_id"), `values` Python values
    for others, and the rest get the field's default (`now` for auto_now
    fields), so a column added later with a default needs no change here.
    `on_conflict` is appended as is ("ON CONFLICT DO NOTHING").
    """
    values = dict(values or {})
    columns: list[str] = []
    selects: list[str] = []
    select_params: list[Any] = []
    for field in model._meta.local_concrete_fields:
        name = field.attname
        if name in expressions:
            columns.append(field.column)
            selects.append(expressions[name])
        elif field.primary_key or getattr(field, "generated", False):
            continue  # the sequence's (or the database's) value
        elif field.db_default is not NOT_PROVIDED and name not in values:
            continue
        else:
            value = (
                field.get_db_prep_save(values[name], connection)
                if name in values
                else _default(field, now=now)
            )
            columns.append(field.column)
            selects.append("%s")
            select_params.append(value)
    unknown = (set(expressions) | set(values)) - {
        f.attname for f in model._meta.local_concrete_fields
    }
    if unknown:
        raise ValueError(f"{model.__name__} has no columns {sorted(unknown)}")
    sql = (
        # Table and column names from the model's meta; `from_sql` is the caller's own SQL.
        f"INSERT INTO {_quote(model._meta.db_table)} ({', '.join(map(_quote, columns))}) "  # noqa: S608
        f"SELECT {', '.join(selects)} FROM {from_sql} {on_conflict}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*select_params, *params])
        return cursor.rowcount


def execute(sql: str, params: Sequence[Any] = ()) -> int:
    """One statement; its row count."""
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.rowcount


def fetch(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.fetchall()


def next_ids(model: type[Model], count: int) -> list[int]:
    """`count` primary keys drawn from the model's sequence, for rows COPY will write."""
    if count == 0:
        return []
    table = model._meta.db_table
    column = model._meta.pk.column
    rows = fetch(
        "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
        [table, column, count],
    )
    return [row[0] for row in rows]


def analyze_if_grown(model: type[Model], *, rows: int, share: float = 0.2) -> None:
    """ANALYZE the model's table when `rows` new rows are a large share of what it knew.

    Autovacuum analyses a table only after its transaction commits and its
    next nap; a statement planned before that believes a fresh 100,000-row
    campaign has a handful of rows and picks nested loops that run for
    minutes. Small batches (under 1,000 rows or `share` of the table) skip it.
    One statement either way, so callers keep a fixed query count.
    """
    table = _quote(model._meta.db_table)
    rows, share = int(rows), float(share)  # inlined: DO blocks take no parameters
    regclass = "'" + table.replace("'", "''") + "'"
    execute(
        f"DO $$ BEGIN IF {rows} >= 1000 AND {rows} >= {share} * GREATEST(0, "  # noqa: S608
        f"(SELECT reltuples FROM pg_class WHERE oid = {regclass}::regclass)) "
        f"THEN ANALYZE {table}; END IF; END $$"
    )
