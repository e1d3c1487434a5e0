"""How the console and the outbox claim behave on millions of rows.

Fills a throwaway PostgreSQL database with leads, conversations and messages
(generate_series, so it takes seconds, not hours), then times the admin
changelists an operator opens most, a phone search, and the outbox claim
query, and prints the claim query's plan.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sdr_ops_bench \
        .venv/bin/python bench/admin_at_scale.py --messages 1000000

The database is dropped and re-created: never point it at real data.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import migrated_bench_database

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")


FILL_SQL = """
INSERT INTO conversations_lead (phone, name, email, company, source, attributes, opted_out,
                                created_at, updated_at)
SELECT '+55119' || lpad(i::text, 8, '0'), 'Lead ' || i, '', '', 'bench', '{{}}', false,
       now() - (i || ' seconds')::interval, now()
FROM generate_series(1, {leads}) AS i;

INSERT INTO conversations_conversation (lead_id, chip_id, status, controlled_by, agent_paused,
    paused_reason, flow_step, flow_data, context, last_message_at, last_inbound_at, last_error,
    external_id, owner_reason, created_at, updated_at)
SELECT l.id, (SELECT min(id) FROM channels_chip) + (l.id % {chips}), 'open', 'agent', false,
       '', '', '{{}}', '{{}}', now() - (l.id || ' seconds')::interval,
       now() - (l.id || ' seconds')::interval, '', '', '', now(), now()
FROM conversations_lead l;

INSERT INTO conversations_message (conversation_id, chip_id, direction, purpose, kind, body,
    media_url, media_id, media_mime_type, status, outcome, provider_message_id, priority,
    attempts, last_error, lease_owner, next_attempt_at, created_at, updated_at, sent_at,
    failed_at)
SELECT c.id, c.chip_id,
       CASE WHEN s.i % 2 = 0 THEN 'in' ELSE 'out' END,
       CASE WHEN s.i % 2 = 0 THEN 'inbound' ELSE 'reply' END,
       'text', 'mensagem ' || s.i, '', '', '',
       CASE WHEN s.i % 2 = 0 THEN 'processed'
            WHEN s.i % 1000 = 1 THEN 'queued'
            WHEN s.i % 50 = 3 THEN 'failed' ELSE 'sent' END,
       CASE WHEN s.i % 2 = 0 OR s.i % 1000 = 1 THEN ''
            WHEN s.i % 50 = 3 THEN 'failed_provider' ELSE 'sent' END,
       'wamid.' || s.i, 0, 0, '', '',
       now() - (s.i || ' seconds')::interval,
       now() - (s.i || ' seconds')::interval, now(),
       CASE WHEN s.i % 2 = 1 AND s.i % 1000 <> 1 AND s.i % 50 <> 3
            THEN now() - (s.i || ' seconds')::interval END,
       CASE WHEN s.i % 50 = 3 THEN now() - (s.i || ' seconds')::interval END
FROM generate_series(1, {messages}) AS s(i)
JOIN conversations_conversation c ON c.id = (SELECT min(id) FROM conversations_conversation)
                                          + (s.i % {leads});
ANALYZE;
"""


def timed(label: str, func, repeat: int = 5) -> float:
    func()  # warm up caches and the connection
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        samples.append((time.perf_counter() - start) * 1000)
    median = statistics.median(samples)
    print(f"{label:<55} median {median:8.1f} ms  (max {max(samples):.1f})")
    return median


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--chips", type=int, default=10)
    args = parser.parse_args()
    migrated_bench_database()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from channels.models import Chip

    for n in range(args.chips):
        Chip.objects.create(name=f"bench {n}", provider="sandbox", phone=f"+55118{n:08d}")
    start = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(FILL_SQL.format(leads=args.leads, messages=args.messages, chips=args.chips))
    print(
        f"filled {args.leads:,} leads/conversations and {args.messages:,} messages "
        f"in {time.perf_counter() - start:.0f} s"
    )

    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)

    def page(url: str):
        def get():
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)

        return get

    timed("admin: messages changelist", page("/admin/conversations/message/"))
    timed(
        "admin: messages filtered (outbound, queued)",
        page("/admin/conversations/message/?direction__exact=out&status__exact=queued"),
    )
    timed("admin: conversations changelist", page("/admin/conversations/conversation/"))
    timed(
        "admin: leads search by typed phone", page("/admin/conversations/lead/?q=(11)+90000-4242")
    )
    timed(
        "admin: messages search by phone",
        page("/admin/conversations/message/?q=%2B5511900004242"),
    )

    # The dashboard: the whole tiles fragment, then each selector behind it.
    from core import dashboard
    from core.alerts import alerts_evaluate

    timed("dashboard: tiles fragment (every tile and chart)", page("/admin/dashboard/tiles/"))
    timed("dashboard: sends per hour by outcome, 24 h", dashboard.sends_by_hour)
    timed("dashboard: outbox backlog + failed 24 h", dashboard.outbox_status)
    timed("dashboard: chips with today's sends", dashboard.chips_status)
    timed("dashboard: leads waiting for an answer", dashboard.awaiting_reply)
    timed(
        "dashboard: agent p50/p95 + error rate, 60 min",
        lambda: dashboard.agent_performance(minutes=60),
    )
    timed("alerts: evaluate every rule", alerts_evaluate)

    from django.db import transaction
    from django.test.utils import CaptureQueriesContext

    from conversations.outbox import outbox_claim_next

    class Rollback(Exception):
        pass

    def claim_once(capture: bool = False) -> list[str]:
        # The real claim (chip lock, gating, message lock, lease), rolled back
        # so every repetition sees the same queue.
        with CaptureQueriesContext(connection) as queries:
            try:
                with transaction.atomic():
                    assert outbox_claim_next() is not None
                    raise Rollback
            except Rollback:
                pass
        return [q["sql"] for q in queries.captured_queries] if capture else []

    timed(f"outbox claim (1 of ~{args.messages // 1000:,} queued)", claim_once)
    select_sql = [
        sql
        for sql in claim_once(capture=True)
        if sql.startswith("SELECT") and "FOR" in sql and "UPDATE" in sql
    ]
    with connection.cursor() as cursor:
        for sql in select_sql:
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql)
            plan = [row[0] for row in cursor.fetchall()]
            print("\n" + "\n".join(plan[:14]) + ("\n  …" if len(plan) > 14 else ""))


if __name__ == "__main__":
    main()
