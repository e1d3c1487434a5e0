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
