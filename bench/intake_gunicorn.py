"""gunicorn hooks for bench/intake.py: count what each worker asks of the database and Redis.

Each worker counts the SQL statements Django sends and the Redis connections
it opens, and writes them to BENCH_COUNTS_DIR when it exits. The counting is
a few hundred nanoseconds per statement, the same for both apps.
"""

import json
import os

worker_class = "sync"


def post_worker_init(worker):
    from django.db import connection

    counts = worker.bench_counts = {"statements": 0, "redis_connections": 0}

    def count_statement(execute, sql, params, many, context):
        counts["statements"] += 1
        return execute(sql, params, many, context)

    connection.execute_wrappers.append(count_statement)
    try:
        import redis.connection
    except ImportError:
        return
    connect = redis.connection.AbstractConnection.connect

    def counting_connect(self):
        if not self._sock:
            counts["redis_connections"] += 1
        return connect(self)

    redis.connection.AbstractConnection.connect = counting_connect


def worker_exit(server, worker):
    counts = getattr(worker, "bench_counts", None)
    directory = os.environ.get("BENCH_COUNTS_DIR")
    if counts is not None and directory:
        with open(os.path.join(directory, f"{worker.pid}.json"), "w") as out:
            json.dump(counts, out)
