"""Store one webhook delivery in one statement, deduplicated by the database.

`INSERT … ON CONFLICT DO NOTHING RETURNING id` settles a retried or concurrent
duplicate through the unique (chip, dedupe_key) constraint without a prior
SELECT or a savepoint: a concurrent insert of the same key waits for the
other transaction and then returns nothing. PostgreSQL and SQLite (3.35+)
both speak it.
"""

from __future__ import annotations

from django.db import connection

from channels.models import WebhookEvent
from channels.redaction import webhook_event_redact

_FIELDS = [
    field
    for field in WebhookEvent._meta.concrete_fields
    if not field.primary_key and not field.generated
]


def webhook_event_insert(event: WebhookEvent) -> bool:
    """Insert the unsaved `event` and set its pk; False when its dedupe key is already stored.

    Like `WebhookEvent.save`, strips credentials from what is stored first.
    """
    webhook_event_redact(event)
    quote = connection.ops.quote_name
    table = quote(WebhookEvent._meta.db_table)
    columns = ", ".join(quote(field.column) for field in _FIELDS)
    placeholders = ", ".join(["%s"] * len(_FIELDS))
    params = [
        field.get_db_prep_save(field.pre_save(event, add=True), connection) for field in _FIELDS
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "  # noqa: S608
            f"ON CONFLICT DO NOTHING RETURNING {quote('id')}",
            params,
        )
        row = cursor.fetchone()
    if row is None:
        return False
    event.pk = row[0]
    event._state.adding = False
    return True
