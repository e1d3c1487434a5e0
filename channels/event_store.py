"""Store one webhook delivery in one statement, deduplicated by the database.

`INSERT … ON CONFLICT DO NOTHING RETURNING id` settles a retried or concurrent
duplicate through the unique (chip, dedupe_key) constraint without a prior
SELECT or a savepoint: a concurrent insert of the same key waits for the
other transaction and then returns nothing. PostgreSQL and SQLite (3.35+)
both speak it.

On PostgreSQL with the ORM broker, the event's processing task can ride in
the same statement (`webhook_event_insert(task, **values)`): a data-modifying
CTE writes the django-q2 task row only when the event row was written. One
statement in autocommit is one round trip and one commit, and there is never
an event without its task or a task without its event.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Field
from django.utils import timezone
from django_q.models import OrmQ
from psycopg.types.json import Jsonb

from channels.models import WebhookEvent
from channels.redaction import webhook_values_redact
from core.db import db_cursor_binding_params

_FIELDS = [
    field
    for field in WebhookEvent._meta.concrete_fields
    if not field.primary_key and not field.generated
]

# Text and integer columns take a value of their own Python type unchanged, and
# every column takes None as NULL: those skip Django's per-field preparation
# (about 9 % of a delivery's instructions). JSON and datetimes still go through it.
_TEXT_TYPES = frozenset({"CharField", "TextField"})
_INTEGER_TYPES = frozenset(
    {"IntegerField", "PositiveIntegerField", "BigIntegerField", "BigAutoField", "AutoField"}
)


def _plain_type(field: Field) -> type | None:
    stored = field.target_field if field.is_relation else field
    kind = stored.get_internal_type()
    if kind in _TEXT_TYPES:
        return str
    if kind in _INTEGER_TYPES:
        return int
    return None


def _default(field: Field) -> Callable[[datetime], Any]:
    """What the ORM would store in `field` when it is not given, from the insert's time."""
    if getattr(field, "auto_now_add", False) or field.default is timezone.now:
        return lambda now: now
    if callable(field.default):
        return lambda now: field.get_default()
    value = field.get_default()
    return lambda now: value


# Per column: its attribute name, the type that needs no preparation, its default.
_COLUMNS = [(field.attname, _plain_type(field), _default(field), field) for field in _FIELDS]

_TASK_COLUMNS = [OrmQ._meta.get_field(name).column for name in ("key", "payload", "lock")]


@dataclass(frozen=True)
class QueuedTask:
    """A django-q2 task row for the ORM broker: its cluster's key and signed package."""

    key: str
    package: str


@functools.cache
def _insert_sql(vendor: str, with_task: bool) -> str:
    """The statement's text, built once per database vendor (it never changes)."""
    quote = connection.ops.quote_name
    table = quote(WebhookEvent._meta.db_table)
    columns = ", ".join(quote(field.column) for field in _FIELDS)
    placeholders = ", ".join(["%s"] * len(_FIELDS))
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "  # noqa: S608
        f"ON CONFLICT DO NOTHING RETURNING {quote('id')}"
    )
    if not with_task:
        return sql
    task_columns = ", ".join(quote(column) for column in _TASK_COLUMNS)
    return (
        f"WITH event AS ({sql}), "  # noqa: S608
        f"task AS (INSERT INTO {quote(OrmQ._meta.db_table)} ({task_columns}) "
        f"SELECT %s, %s, %s FROM event) "
        f"SELECT {quote('id')} FROM event"
    )


def webhook_event_insert(
    task: QueuedTask | None = None, *, payload_json: bytes | None = None, **values: Any
) -> int | None:
    """Insert a new event from its field values (by attribute name, `chip_id`); its id.

    None when the chip already stored its dedupe key. Fields not given take
    the defaults the ORM would give them. No model instance is built: intake
    needs only the id. Like `WebhookEvent.save`, strips credentials from what
    is stored first. `payload_json`, a UTF-8 JSON text of the payload that
    PostgreSQL reads as it is (the body it was parsed from), is stored instead
    of serializing the payload again, unless a credential was stripped from it.
    With `task` (PostgreSQL only), its row is written in the same statement,
    and only if the event was new.
    """
    # The connection behind the proxy, looked up once rather than per use.
    db = connections[DEFAULT_DB_ALIAS]
    payload = values.get("payload")
    webhook_values_redact(values)
    verbatim = payload_json is not None and values.get("payload") is payload
    verbatim = verbatim and db.vendor == "postgresql"
    now = timezone.now()
    params = []
    for name, plain_type, default, field in _COLUMNS:
        value = values[name] if name in values else default(now)
        if verbatim and name == "payload":
            value = Jsonb(payload_json, dumps=_as_is)
        elif value is not None and type(value) is not plain_type:
            value = field.get_db_prep_save(value, db)
        params.append(value)
    if task is not None:
        params += [task.key, task.package, now]
    with db_cursor_binding_params() as cursor:
        cursor.execute(_insert_sql(db.vendor, task is not None), params)
        row = cursor.fetchone()
    return None if row is None else row[0]


def _as_is(text: bytes) -> bytes:
    return text
