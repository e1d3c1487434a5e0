"""Store one webhook delivery in one statement, deduplicated by the database.

`INSERT … ON CONFLICT DO NOTHING RETURNING id` settles a retried or concurrent
duplicate through the unique (chip, dedupe_key) constraint without a prior
SELECT or a savepoint: a concurrent insert of the same key waits for the
other transaction and then returns nothing. PostgreSQL and SQLite (3.35+)
both speak it.

On PostgreSQL with the ORM broker, the event's processing task can ride in
the same statement (`webhook_event_insert(event, task=…)`): a data-modifying
CTE writes the django-q2 task row only when the event row was written. One
statement in autocommit is one round trip and one commit, and there is never
an event without its task or a task without its event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection
from django.db.models import Field
from django.utils import timezone
from django_q.models import OrmQ

from channels.models import WebhookEvent
from channels.redaction import webhook_event_redact
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


_PLAIN_TYPES = [_plain_type(field) for field in _FIELDS]

_TASK_COLUMNS = [OrmQ._meta.get_field(name).column for name in ("key", "payload", "lock")]


def _task_columns(quote: Callable[[str], str]) -> str:
    return ", ".join(quote(column) for column in _TASK_COLUMNS)


@dataclass(frozen=True)
class QueuedTask:
    """A django-q2 task row for the ORM broker: its cluster's key and signed package."""

    key: str
    package: str


def webhook_event_insert(event: WebhookEvent, task: QueuedTask | None = None) -> bool:
    """Insert the unsaved `event` and set its pk; False when its dedupe key is already stored.

    With `task` (PostgreSQL only), its row is written in the same statement,
    and only if the event was new. Like `WebhookEvent.save`, strips
    credentials from what is stored first.
    """
    webhook_event_redact(event)
    quote = connection.ops.quote_name
    table = quote(WebhookEvent._meta.db_table)
    columns = ", ".join(quote(field.column) for field in _FIELDS)
    placeholders = ", ".join(["%s"] * len(_FIELDS))
    params = []
    for field, plain_type in zip(_FIELDS, _PLAIN_TYPES, strict=True):
        value = field.pre_save(event, add=True)
        if value is not None and type(value) is not plain_type:
            value = field.get_db_prep_save(value, connection)
        params.append(value)
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "  # noqa: S608
        f"ON CONFLICT DO NOTHING RETURNING {quote('id')}"
    )
    if task is not None:
        sql = (
            f"WITH event AS ({sql}), "  # noqa: S608
            f"task AS (INSERT INTO {quote(OrmQ._meta.db_table)} ({_task_columns(quote)}) "
            f"SELECT %s, %s, %s FROM event) "
            f"SELECT {quote('id')} FROM event"
        )
        params += [task.key, task.package, timezone.now()]
    with db_cursor_binding_params() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    event.pk = row[0]
    event._state.adding = False
    return True
