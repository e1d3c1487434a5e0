"""PostgreSQL prepares the queries a connection runs again, unless a pooler forbids it."""

import os
import subprocess
import sys

import pytest
from django.db import connection

from conversations.models import Conversation
from tests.support import processes

pytestmark = pytest.mark.django_db

COUNT_PREPARED = (
    "import django; django.setup(); "
    "from django.db import connection; "
    "cursor = connection.cursor(); "
    "[cursor.execute('SELECT %s::int + 1', [n]) for n in range(8)]; "
    "cursor.execute('SELECT count(*) FROM pg_prepared_statements'); "
    "print(cursor.fetchone()[0])"
)


def _prepared_in_production(**env: str) -> int:
    """How many statements a production process's connection prepared after 8 equal queries."""
    clean = {k: v for k, v in os.environ.items() if k != "DATABASE_PREPARED_STATEMENTS"}
    done = subprocess.run(
        [sys.executable, "-c", COUNT_PREPARED],
        cwd=processes.BASE_DIR,
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "SECRET_KEY": "k" * 50,
            "SALT_KEY": "s" * 20,
            "DATABASE_URL": processes.test_database_url(),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_production_prepares_a_query_its_connection_runs_again():
    assert _prepared_in_production() == 1


def test_prepared_statements_can_be_turned_off_for_a_pooler_in_transaction_mode():
    assert _prepared_in_production(DATABASE_PREPARED_STATEMENTS="False") == 0


def test_the_suite_runs_its_queries_as_production_does():
    # A query the server cannot type without its values fails in the tests
    # too, not only in production.
    for _ in range(6):
        list(Conversation.objects.filter(pk=1).select_related("lead", "chip"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        statements = [row[0] for row in cursor.fetchall()]
    assert any('FROM "conversations_conversation"' in statement for statement in statements)
