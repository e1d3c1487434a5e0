"""CPU and statements per lead of each step of an answer, in one process, against a yardstick.

The reply-latency bench (bench/reply_latency.py) times what a lead feels,
end to end through real processes; on a shared two-core host its figures
move by a second from one run to the next, far more than a change worth a
few milliseconds per lead. This one runs the same code paths in one process,
one step at a time, for N leads writing to one chip:

- first: the task a new message starts (the lease, the typing presence, the
  plan with the model's answer, the resume scheduled for the window's end);
- resumed: the task that resumes the turn when the window ends (the plan
  checked against the conversation and applied, the reply queued);
- send: the outbox draining the replies into the fake provider.

Each step reports CPU ms per lead (including the fake servers' threads,
the same for every run), SQL statements per lead, and the CPU in yardsticks
(bench.common.yardstick_ms, measured before and after the round): the ratio
stays put when the machine's pace changes, so two commits compare in one
sitting. The window is 4 s (production's default); the resumed tasks run
once it is over, as the broker would hand them out.

    .venv/bin/python bench/turn_cpu.py --leads 50 --rounds 3

Uses the throwaway database BENCH_DATABASE_URL (default
postgres://postgres@127.0.0.1:5432/sdr_ops_bench_turn; dropped and
re-created) and the ORM broker (the scheduled resumes are read back from its
table), with production settings.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import recreate_database, yardstick_ms
from bench.reply_latency import REPLY, make_chips

WINDOW = 4.0


def run_round(*, leads: int, chip: Any, profile: str | None = None) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    from agent.tasks import answer_message
    from agent.turns import ANSWER_TASK
    from conversations.outbox import outbox_drain
    from tests.factories.conversations import ConversationFactory, InboundMessageFactory

    before = yardstick_ms()
    OrmQ.objects.all().delete()
    messages = [
        InboundMessageFactory(conversation=ConversationFactory(chip=chip, agent_profile=None))
        for _ in range(leads)
    ]
    steps: dict[str, tuple[float, int]] = {}

    def timed(name: str, work: Any) -> Any:
        profiler = cProfile.Profile() if profile == name else None
        with CaptureQueriesContext(connection) as queries:
            started = time.process_time()
            if profiler is not None:
                profiler.enable()
            result = work()
            if profiler is not None:
                profiler.disable()
            steps[name] = (time.process_time() - started, len(queries))
        if profiler is not None:
            # The profiler's own overhead inflates this round's CPU: read the
            # shares, not the milliseconds.
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(40)
        return result

    timed("first", lambda: [answer_message(message.pk) for message in messages])
    time.sleep(WINDOW + 0.5)
    resumes = [
        task
        for task in (SignedPackage.loads(row.payload) for row in OrmQ.objects.all())
        if task["func"] == ANSWER_TASK
    ]
    if len(resumes) != leads:
        sys.exit(f"{len(resumes)} resumed turns scheduled for {leads} leads: the window was over")
    timed("resumed", lambda: [answer_message(*t["args"], **t["kwargs"]) for t in resumes])
    report = timed("send", outbox_drain)
    if report.sent != leads:
        sys.exit(f"{report.sent} replies sent for {leads} leads")
    yardstick = (before + yardstick_ms()) / 2
    return {
        "yardstick_ms": round(yardstick, 3),
        **{
            name: {
                "cpu_ms": round(cpu / leads * 1000, 2),
                "statements": round(count / leads, 1),
                "yardsticks": round(cpu / leads * 1000 / yardstick, 1),
            }
            for name, (cpu, count) in steps.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write the rounds here")
    parser.add_argument(
        "--profile",
        choices=("first", "resumed", "send"),
        help="print cProfile's hot spots of this step in the last round (its CPU is then inflated)",
    )
    args = parser.parse_args()

    url = os.environ.get(
        "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sdr_ops_bench_turn"
    )
    recreate_database(url)
    from tests.support.fake_openai import completion, running_fake_openai
    from tests.support.fake_provider import running_fake_provider

    with running_fake_openai() as llm, running_fake_provider() as provider:
        os.environ.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings.production",
                "SECRET_KEY": secrets.token_urlsafe(50),
                "SALT_KEY": secrets.token_urlsafe(24),
                "SECURE_SSL_REDIRECT": "False",
                "DATABASE_URL": url,
                "PROVIDER_ALLOW_PRIVATE_URLS": "True",
                "Q_BROKER": "orm",
                "Q_NAME": "bench_turn",
                "OPENAI_API_KEY": "sk-bench",
                "OPENAI_BASE_URL": llm.url,
                "AGENT_BURST_WINDOW_SECONDS": str(WINDOW),
                "LOG_LEVEL": "WARNING",
            }
        )
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        llm.script(then=completion(REPLY))
        # The reply-latency bench's chip: its profile, the fake provider, no daily cap.
        [chip] = make_chips("turn", 1, provider.url)
        rounds = []
        for n in range(args.rounds):
            last = n == args.rounds - 1
            result = run_round(leads=args.leads, chip=chip, profile=args.profile if last else None)
            rounds.append(result)
            steps = "; ".join(
                f"{name} {result[name]['cpu_ms']} ms, {result[name]['statements']} statements, "
                f"{result[name]['yardsticks']} yardsticks"
                for name in ("first", "resumed", "send")
            )
            print(f"round {n + 1}: yardstick {result['yardstick_ms']} ms | {steps}", flush=True)
    medians = {
        name: statistics.median(r[name]["yardsticks"] for r in rounds)
        for name in ("first", "resumed", "send")
    }
    print(f"median yardsticks per lead: {medians}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": rounds, "medians": medians}, indent=2))


if __name__ == "__main__":
    main()
