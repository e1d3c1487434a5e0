"""What the bench scripts share."""

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
