"""purge_old_data on a million old messages: how long, in how many batches, how long the longest.

Fills a throwaway PostgreSQL database with 1,000,000 messages (and their
conversations and delivery attempts) older than the retention period, plus a
day of fresh traffic, then runs the real purge (conversations.retention.data_purge)
and, while it runs, times a tiny write on the same table from another
connection every 100 ms: the purge must never make the intake wait long.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sdr_ops_bench_purge \\
        .venv/bin/python bench/purge_at_scale.py --messages 1000000

The database is dropped and re-created: never point it at real data.
"""

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import recreate_database

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

FILL_SQL = """
INSERT INTO conversations_lead (phone, name, email, company, source, attributes, opted_out,
                                created_at, updated_at)
SELECT '+55119' || lpad(i::text, 8, '0'), 'Lead ' || i, '', '', 'bench', '{{}}', false,
       now() - interval '120 days', now()
FROM generate_series(1, {leads}) AS i;

INSERT INTO conversations_conversation (lead_id, chip_id, status, controlled_by, agent_paused,
    paused_reason, flow_step, flow_data, context, last_message_at, last_inbound_at, last_error,
    external_id, owner_reason, created_at, updated_at)
SELECT l.id, (SELECT min(id) FROM channels_chip), 'closed', 'agent', false,
       '', '', '{{}}', '{{}}', now() - interval '100 days', now() - interval '100 days', '', '',
       '', now() - interval '120 days', now()
FROM conversations_lead l;

INSERT INTO conversations_message (conversation_id, chip_id, direction, purpose, kind, body,
    media_url, media_id, media_mime_type, status, outcome, provider_message_id, priority,
    attempts, last_error, lease_owner, created_at, updated_at, sent_at)
SELECT c.id, c.chip_id,
       CASE WHEN s.i % 2 = 0 THEN 'in' ELSE 'out' END,
       CASE WHEN s.i % 2 = 0 THEN 'inbound' ELSE 'reply' END,
       'text', 'mensagem antiga ' || s.i, '', '', '',
       CASE WHEN s.i % 2 = 0 THEN 'processed' ELSE 'sent' END,
       CASE WHEN s.i % 2 = 0 THEN '' ELSE 'sent' END,
       'wamid.' || s.i, 0, 1, '', '',
       now() - interval '91 days' - (s.i || ' seconds')::interval, now(),
       CASE WHEN s.i % 2 = 1 THEN now() - interval '91 days' - (s.i || ' seconds')::interval END
FROM generate_series(1, {messages}) AS s(i)
JOIN conversations_conversation c ON c.id = (SELECT min(id) FROM conversations_conversation)
                                          + (s.i % {leads});

INSERT INTO conversations_deliveryattempt (message_id, chip_id, started_at, duration_ms, outcome,
    error_code, error, provider_message_id)
SELECT m.id, m.chip_id, m.sent_at, 120, 'sent', '', '', m.provider_message_id
FROM conversations_message m WHERE m.direction = 'out';
ANALYZE;
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--leads", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("set DATABASE_URL to a throwaway PostgreSQL database named sdr_ops_bench…")
    recreate_database(url)

    import django

    django.setup()
    import psycopg
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from channels.models import Chip
    from conversations.models import Message
    from conversations.retention import data_purge

    call_command("migrate", verbosity=0)
    Chip.objects.create(name="bench", provider="sandbox", phone="+5511800000000")
    start = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(FILL_SQL.format(leads=args.leads, messages=args.messages))
    print(
        f"filled {args.messages:,} messages older than 90 days "
        f"in {time.perf_counter() - start:.0f} s"
    )

    # Another connection writes to the same tables meanwhile, like the intake.
    waits: list[float] = []
    stop = threading.Event()

    def writer() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                began = time.perf_counter()
                conn.execute(
                    "UPDATE conversations_message SET updated_at = now() "
                    "WHERE id = (SELECT max(id) FROM conversations_message)"
                )
                waits.append((time.perf_counter() - began) * 1000)
                time.sleep(0.1)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    batch = args.batch_size or settings.RETENTION_BATCH_SIZE
    start = time.perf_counter()
    report = data_purge(batch_size=batch)
    elapsed = time.perf_counter() - start
    stop.set()
    thread.join()

    print(f"purge: {report.counts} in {elapsed:.0f} s")
    print(
        f"{report.batches} batches of up to {batch} rows; longest batch "
        f"{report.longest_batch_ms:.0f} ms"
    )
    print(
        f"concurrent single-row writes during the purge: {len(waits)}, "
        f"median {statistics.median(waits):.1f} ms, max {max(waits):.0f} ms"
    )
    print(f"messages left: {Message.objects.count()}")


if __name__ == "__main__":
    main()
