"""How long a big audience takes to import and to queue, and how many queries each takes.

Builds a CSV of N leads in the formats operators type ("(11) 9…", "11 9…",
"+55 11 9…"), imports it into a campaign over 4 chips through the admin's
service (audience_import), then starts the campaign (campaign_start: skips
over the whole audience; chip spread, conversations and rendered messages for
the first CAMPAIGN_QUEUE_AHEAD per chip). Then the chips are made to have sent
everything queued (not timed) and the scheduler's top-up queues the next
batch (campaign_top_up, timed); with --full, top-ups repeat until the whole
audience is queued, and their total is printed too. Each size runs in the
same process, with a baseline taken in the same run: a bare bulk insert of
the same number of leads (the floor any import pays).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sdr_ops_bench_campaigns \\
        .venv/bin/python bench/campaign_enqueue.py --sizes 1000 100000 --full

The database is dropped and re-created: never point it at real data.
"""

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import migrated_bench_database

FORMATS = ("({ddd}) 9{a:04d}-{b:04d}", "{ddd}9{a:04d}{b:04d}", "+55 {ddd} 9 {a:04d}-{b:04d}")


def audience_csv(size: int, *, offset: int) -> bytes:
    lines = ["nome;telefone;empresa;cidade"]
    for i in range(offset, offset + size):
        ddd = 11 + (i // 100_000_000) % 80
        rest = i % 100_000_000
        phone = FORMATS[i % 3].format(ddd=ddd, a=rest // 10_000, b=rest % 10_000)
        lines.append(f"Lead {i};{phone};Empresa {i % 97};Cidade {i % 13}")
    return ("\n".join(lines) + "\n").encode()


def _commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        return subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument(
        "--slowest", type=int, default=0, help="also list each phase's N slowest statements"
    )
    parser.add_argument(
        "--full", action="store_true", help="top up until the whole audience is queued"
    )
    args = parser.parse_args()
    migrated_bench_database()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from campaigns.audience import audience_import
    from campaigns.models import Campaign, CampaignRecipient
    from campaigns.services import campaign_start, campaign_top_up
    from channels.models import Chip
    from conversations.models import Lead, Message

    chips = [
        Chip.objects.create(
            name=f"bench {n}", provider="sandbox", phone=f"+55118{n:08d}", daily_cap=200 * (n + 1)
        )
        for n in range(4)
    ]

    def measured(func):
        """(result, seconds, queries, seconds in SQL, the captured statements)."""
        with CaptureQueriesContext(connection) as queries:
            start = time.perf_counter()
            result = func()
            elapsed = time.perf_counter() - start
        sql = sum(float(q["time"]) for q in queries.captured_queries)
        return result, elapsed, len(queries), sql, queries.captured_queries

    def slowest(label, captured):
        for query in sorted(captured, key=lambda q: -float(q["time"]))[: args.slowest]:
            print(f"    {label} {float(query['time']):6.2f}s  {query['sql'][:110]}", flush=True)

    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {_commit()}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
        f"{os.cpu_count()} CPUs, CAMPAIGN_QUEUE_AHEAD {settings.CAMPAIGN_QUEUE_AHEAD} "
        f"per chip over {len(chips)} chips",
        flush=True,
    )
    print(
        f"{'recipients':>10} | {'baseline':>8} | {'import':>7} {'SQL':>6} {'queries':>7} "
        f"| {'enqueue':>7} {'SQL':>6} {'queries':>7} | {'top-up':>7} {'SQL':>6} {'queries':>7}",
        flush=True,
    )

    def chips_sent_everything(campaign):
        """Not timed: what the outbox does between two ticks, at once."""
        Message.objects.filter(campaign=campaign, status=Message.Status.QUEUED).update(
            status=Message.Status.SENT
        )
        campaign.recipients.filter(status=CampaignRecipient.Status.QUEUED).update(
            status=CampaignRecipient.Status.SENT
        )

    def top_up(campaign):
        chips_sent_everything(campaign)
        return measured(lambda: campaign_top_up(campaign_id=campaign.pk))

    offset = 0
    for size in args.sizes:
        content = audience_csv(size, offset=offset)
        # Baseline: the same number of bare leads in one ORM bulk insert.
        bare = [Lead(phone=f"+55219{offset + i:08d}", name="x") for i in range(size)]
        _, baseline, *_ = measured(lambda bare=bare: Lead.objects.bulk_create(bare))
        campaign = Campaign.objects.create(
            name=f"bench {size}",
            message_template=(
                "Oi {{nome}}, da {{empresa}}!\n---\nOlá {{nome}}, tudo bem em {{cidade}}?"
            ),
        )
        campaign.chips.set(chips)
        report, import_s, import_q, import_sql, import_log = measured(
            lambda c=campaign, b=content: audience_import(campaign=c, name="bench.csv", content=b)
        )
        assert report.imported, report
        assert report.added == size, report
        result, start_s, start_q, start_sql, start_log = measured(
            lambda c=campaign: campaign_start(campaign=c)
        )
        room = settings.CAMPAIGN_QUEUE_AHEAD * len(chips)
        assert result.queued == min(size, room), result
        assert result.queued + result.waiting == size, result
        assert Message.objects.filter(campaign=campaign).count() == result.queued
        queued, top_s, top_q, top_sql, top_log = top_up(campaign)
        assert queued == min(size - result.queued, room), queued
        offset += size
        print(
            f"{size:>10,} | {baseline:>7.2f}s | {import_s:>6.2f}s {import_sql:>5.2f}s "
            f"{import_q:>7} | {start_s:>6.2f}s {start_sql:>5.2f}s {start_q:>7} "
            f"| {top_s:>6.2f}s {top_sql:>5.2f}s {top_q:>7}",
            flush=True,
        )
        slowest("import ", import_log)
        slowest("enqueue", start_log)
        slowest("top-up ", top_log)
        if args.full:
            tops, done = [top_s], result.queued + queued
            while done < size:
                queued, top_s, *_ = top_up(campaign)
                assert queued, "a top-up queued nothing with recipients pending"
                tops.append(top_s)
                done += queued
            assert Message.objects.filter(campaign=campaign).count() == size
            print(
                f"{'':>10}   whole audience queued by the start and {len(tops)} top-ups: "
                f"{start_s + sum(tops):.2f}s in all; top-ups {min(tops):.2f}s to "
                f"{max(tops):.2f}s, median {sorted(tops)[len(tops) // 2]:.2f}s",
                flush=True,
            )
    print(
        f"# done {datetime.now(UTC):%H:%M} UTC, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )


if __name__ == "__main__":
    main()
