"""How fast real qcluster processes drain the outbox into a local fake provider.

Creates a throwaway PostgreSQL database, queues N messages over C unpaced
chips, starts the clusters, enqueues sweeps and times until every message is
sent. Prints throughput, database queries per message are in the tests'
territory; this is wall-clock only.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/sdr_ops_bench_outbox \
        .venv/bin/python bench/outbox_throughput.py --messages 2000 --chips 20 --clusters 2

The database is dropped and re-created: never point it at real data.
"""

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import recreate_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--chips", type=int, default=20)
    parser.add_argument("--clusters", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    url = os.environ.get(
        "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sdr_ops_bench_outbox"
    )
    recreate_database(url)
    # The clusters read the same variable through config.settings.test.
    os.environ["TEST_DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    import django

    django.setup()
    from django.core.management import call_command
    from django_q.tasks import async_task

    from channels.models import Chip
    from conversations.models import Conversation, Lead, Message
    from tests.support.fake_provider import running_fake_provider
    from tests.support.processes import running_qcluster

    call_command("migrate", verbosity=0)

    with running_fake_provider() as provider:
        chips = Chip.objects.bulk_create(
            [
                Chip(
                    name=f"bench {i}",
                    provider="evolution",
                    status=Chip.Status.CONNECTED,
                    webhook_key=f"bench-key-{i}",
                    api_base_url=provider.url,
                    instance_id=f"bench{i}",
                    api_token="bench-token",  # noqa: S106 - the fake provider's
                    min_interval_seconds=0,
                    jitter_seconds=0,
                    daily_cap=10**9,
                )
                for i in range(args.chips)
            ]
        )
        leads = Lead.objects.bulk_create(
            [Lead(phone=f"+5511{900000000 + i:09d}") for i in range(args.messages)]
        )
        conversations = Conversation.objects.bulk_create(
            [Conversation(lead=lead, chip=chips[i % len(chips)]) for i, lead in enumerate(leads)]
        )
        Message.objects.bulk_create(
            [
                Message(
                    conversation=c,
                    chip_id=c.chip_id,
                    direction="out",
                    purpose="campaign",
                    body=f"bench-{i}",
                    status="queued",
                )
                for i, c in enumerate(conversations)
            ]
        )

        from contextlib import ExitStack

        started = time.monotonic()
        with ExitStack() as stack:
            # Every cluster on the same queue, as several machines run them.
            for _ in range(args.clusters):
                stack.enter_context(running_qcluster(workers=args.workers))
            for _ in range(args.clusters * args.workers * 3):
                async_task("conversations.tasks.outbox_sweep", 100)
            while Message.objects.filter(status="sent").count() < args.messages:
                if time.monotonic() - started > 600:
                    sys.exit("gave up after 600 s")
                time.sleep(0.5)
            elapsed = time.monotonic() - started

        requests = provider.seen()
        per_body = Counter(r.body["text"] for r in requests)
        sending = max(r.finished for r in requests) - min(r.started for r in requests)
        print(
            f"{args.messages} messages, {args.chips} chips, {args.clusters} clusters x "
            f"{args.workers} workers: {elapsed:.1f}s including cluster start-up, "
            f"{args.messages / elapsed:.1f} msg/s; first to last request {sending:.1f}s, "
            f"{args.messages / sending:.1f} msg/s; provider requests {sum(per_body.values())}, "
            f"duplicates {sum(n - 1 for n in per_body.values())}"
        )


if __name__ == "__main__":
    main()
