"""What the bench scripts share."""

import os
import sys

import psycopg


def recreate_database(url: str) -> None:
    """Drop and create the throwaway database `url` names (refuses other names)."""
    name = url.rsplit("/", 1)[1]
    if not name.startswith("sdr_ops_bench"):
        sys.exit("refusing: the bench database name must start with sdr_ops_bench")
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def migrated_bench_database() -> str:
    """Re-create the DATABASE_URL bench database, set Django up and migrate it; its URL."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("set DATABASE_URL to a throwaway PostgreSQL database named sdr_ops_bench…")
    recreate_database(url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return url


def yardstick_ms(batches: int = 5, per_batch: int = 200) -> float:
    """CPU ms this process needs to build one fixed ORM query's SQL: the machine's pace now.

    Django's query building is most of what the platform's processes do per
    lead, and on a shared host the same code runs up to twice as slow from
    one minute to the next. Taken next to a figure, it says how fast the
    machine was then (lower is faster); the median of a few batches. Needs
    Django set up; touches no database.
    """
    import statistics
    import time

    from conversations.models import Message

    samples = []
    for _ in range(batches):
        started = time.process_time()
        for n in range(per_batch):
            query = (
                Message.objects.filter(conversation_id=n, direction=Message.Direction.INBOUND)
                .exclude(status=Message.Status.IGNORED)
                .order_by("-created_at", "-pk")[:50]
            )
            str(query.query)
        samples.append((time.process_time() - started) / per_batch * 1000)
    return round(statistics.median(samples), 3)
