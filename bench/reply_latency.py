"""How long a lead waits for the agent's answer: lead message -> provider accepted.

Real processes end to end: webhook intake under gunicorn, the two real
qcluster processes (default and agent), a local fake OpenAI-compatible
server (instant, or `--llm-delay` seconds per call) and a local fake
provider (Evolution API's shape). Leads write at once; each answer is timed
from the moment the lead's webhook was posted to the moment the fake
provider accepted the first part of the reply. The platform's own share is
that minus the least a lead could wait: the burst window and the model's
delay one after the other, or the longer of the two when the turn is planned
during the window (AGENT_PLAN_DURING_WINDOW, on unless `--no-plan-ahead`).

Scenarios: 1, 10 and 100 leads writing at once to one chip, 100 leads over
10 chips; then (`--flood`) 2,000 lead messages from 1,400 leads at 50
deliveries/s over 10 chips, on the first broker given, counting how many
replies the stuck-conversation recovery sent instead of the normal path
(target: none).

    .venv/bin/python bench/reply_latency.py --brokers redis orm --flood

Uses the throwaway database BENCH_DATABASE_URL (default
postgres://postgres@127.0.0.1:5432/sdr_ops_bench_replies; dropped and
re-created) and BENCH_REDIS_URL (default redis://127.0.0.1:6379/4; its
`bench_replies` queues are cleared). Prints one line per scenario and a JSON
summary at the end (`--json FILE` writes it).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import recreate_database, yardstick_ms
from bench.process_cpu import cpu_by_group, cpu_used

Q_NAME = "bench_replies"
TIMELINE_STEP = 0.5
REPLY = "Oi! Aqui é a Júlia. Como posso ajudar?"


@dataclass
class Scenario:
    name: str
    leads: int
    chips: int
    messages_per_lead: list[int] = field(default_factory=list)  # empty: one each
    rate: float = 0.0  # deliveries per second; 0: all at once


@dataclass
class Result:
    scenario: str
    broker: str
    leads: int
    messages: int
    answered: int
    total: list[float]
    platform: list[float]
    recovered: int
    duplicates: int
    wall: float
    stages: dict[str, dict[str, float | None]] = field(default_factory=dict)
    # CPU seconds by process group from the first post to the last answer.
    cpu: dict[str, float] = field(default_factory=dict)
    # Cores busy (all groups) in each TIMELINE_STEP from the first post: whether
    # the cores are saturated after the window or the work waits on something else.
    timeline: list[float] = field(default_factory=list)
    # bench.common.yardstick_ms just before the scenario: how fast the machine was.
    yardstick: float | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "broker": self.broker,
            "leads": self.leads,
            "messages": self.messages,
            "answered": self.answered,
            "total": _stats(self.total),
            "platform": _stats(self.platform),
            "answered_by_recovery": self.recovered,
            "duplicate_replies": self.duplicates,
            "wall_seconds": round(self.wall, 1),
            "stages": self.stages,
            "cpu_seconds": {group: round(seconds, 2) for group, seconds in self.cpu.items()},
            # Of what the machine's cores could give over the run's wall time.
            "cpu_busy_share": round(sum(self.cpu.values()) / ((os.cpu_count() or 1) * self.wall), 2)
            if self.wall
            else None,
            "cores_busy_timeline": self.timeline,
            "yardstick_ms": self.yardstick,
        }


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {
        "p50": round(statistics.median(ordered), 2),
        "p95": round(p95, 2),
        "max": round(ordered[-1], 2),
    }


def evolution_body(instance: str, message_id: str, phone: str, text: str) -> bytes:
    """A real Evolution `messages.upsert` (tests/fixtures), for this chip, lead and text."""
    from tests.channels.webhooks import load_fixture_json

    payload = load_fixture_json("evolution", "messages_upsert__text_incoming_v1")
    payload["instance"] = instance
    payload["data"]["key"].update({"id": message_id, "remoteJid": f"{phone}@s.whatsapp.net"})
    payload["data"]["message"]["conversation"] = text
    return json.dumps(payload).encode()


def make_chips(tag: str, count: int, provider_url: str) -> list[Any]:
    from agent.models import AgentProfile
    from channels.models import Chip

    profile = AgentProfile.objects.create(
        name=f"bench {tag}", system_prompt="Você é a Júlia, SDR de um buffet."
    )
    chips = []
    for n in range(count):
        # The chip's defaults (30 s campaign interval with jitter) stay: replies
        # must not wait for them.
        chip = Chip.objects.create(
            name=f"bench {tag} {n}",
            provider="evolution",
            status=Chip.Status.CONNECTED,
            api_base_url=provider_url,
            instance_id=f"{tag}{n}",
            api_token="bench-token",  # noqa: S106 - the fake provider's
            daily_cap=10**6,
            agent_profile=profile,
        )
        chips.append(chip)
    return chips


def run_scenario(
    scenario: Scenario, *, broker: str, base: str, provider: Any, seq: list[int], args: Any
) -> Result:
    from agent.models import AgentRun
    from tests.channels.webhooks import auth_headers, webhook_url

    tag = f"{broker[0]}{scenario.name.replace(' ', '')}"[:20]
    chips = make_chips(tag, scenario.chips, provider.url)
    counts = scenario.messages_per_lead or [1] * scenario.leads
    # (phone, path, body, headers) in sending order, lead by lead: a lead who
    # writes twice sends both parts back to back (one burst, one turn).
    deliveries = []
    for lead, n_messages in enumerate(counts):
        for part in range(n_messages):
            seq[0] += 1
            # A new lead per scenario: 55 11 9 + scenario + lead.
            phone = f"55119{seq[1]:02d}{lead:06d}"
            chip = chips[lead % len(chips)]
            body = evolution_body(
                chip.instance_id, f"BENCH{seq[0]:012d}", phone, f"oi, parte {part + 1}"
            )
            headers = {"Content-Type": "application/json", **auth_headers(chip, body)}
            deliveries.append((phone, webhook_url(chip), body, headers))
    seq[1] += 1
    phones = {d[0] for d in deliveries}
    last_sent: dict[str, float] = {}
    statuses: Counter = Counter()
    lock = threading.Lock()
    import httpx

    yardstick = yardstick_ms()
    cpu_before = cpu_by_group(os.getpid(), _process_group)
    started = time.time()
    timeline: list[float] = []
    sampling = threading.Event()

    def sample() -> None:
        previous = sum(cpu_before.values())
        while not sampling.wait(TIMELINE_STEP):
            now = sum(cpu_by_group(os.getpid(), _process_group).values())
            timeline.append(round((now - previous) / TIMELINE_STEP, 1))
            previous = now

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with httpx.Client(base_url=base, timeout=60, limits=httpx.Limits(max_connections=16)) as http:

        def post(index: int) -> None:
            phone, path, body, headers = deliveries[index]
            if scenario.rate:
                delay = started + index / scenario.rate - time.time()
                if delay > 0:
                    time.sleep(delay)
            at = time.time()
            status = http.post(path, content=body, headers=headers).status_code
            with lock:
                statuses[status] += 1
                last_sent[phone] = max(last_sent.get(phone, 0.0), at)

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(post, range(len(deliveries))))

    def accepted() -> dict[str, float]:
        first: dict[str, float] = {}
        for seen in provider.seen("/message/sendText/"):
            number = seen.body.get("number", "")
            if (
                number in phones
                and seen.status == 200
                and number not in first
                and seen.finished >= last_sent[number]
            ):
                first[number] = seen.finished
        return first

    deadline = time.time() + args.timeout
    while len(accepted()) < len(phones) and time.time() < deadline:
        time.sleep(0.5)
    wall = time.time() - started
    sampling.set()
    sampler.join()
    cpu = cpu_used(cpu_before, cpu_by_group(os.getpid(), _process_group))
    time.sleep(1)  # a second reply to anyone would show up here
    first = accepted()
    replies = Counter(
        seen.body.get("number")
        for seen in provider.seen("/message/sendText/")
        if seen.body.get("number") in phones
    )
    window = float(args.window)
    total = [first[p] - last_sent[p] for p in first]
    # The least a lead could wait: with planning ahead the model runs inside the window.
    least = max(window, args.llm_delay) if args.plan_ahead else window + args.llm_delay
    platform = [t - least for t in total]
    recovered = AgentRun.objects.filter(
        trigger=AgentRun.Trigger.RECOVERY, conversation__chip__in=chips
    ).count()
    if statuses.keys() - {200}:
        print(f"  webhook statuses: {dict(statuses)}", file=sys.stderr)
    stages = _stages(phones=phones, posted=last_sent, accepted=first, window=window)
    return Result(
        scenario=scenario.name,
        broker=broker,
        leads=len(phones),
        messages=len(deliveries),
        answered=len(first),
        total=total,
        platform=platform,
        recovered=recovered,
        duplicates=sum(n - 1 for n in replies.values() if n > 1),
        wall=wall,
        stages=stages,
        cpu=cpu,
        timeline=timeline,
        yardstick=yardstick,
    )


def _process_group(cmdline: str, environ: str) -> str:
    if "gunicorn" in cmdline:
        return "gunicorn (intake)"
    if "qcluster" in cmdline:
        # The agent's cluster runs under its own name (tests/support/processes.py).
        return "agent cluster" if f"Q_CLUSTER_NAME={Q_NAME}-agent" in environ else "default cluster"
    return "other"


def _stages(
    *, phones: set[str], posted: dict[str, float], accepted: dict[str, float], window: float
) -> dict[str, dict[str, float | None]]:
    """Where each answer's time went, from the rows the platform wrote (the profile).

    Counted from the window's end (the lead's message received + the
    window): a turn applied during the window (agent.held_turn) wrote its
    reply before it, so that stage is negative; what the platform adds
    after the window is the wait for the send to start, then the send.
    """
    from agent.models import AgentRun
    from conversations.models import DeliveryAttempt, Message

    parts: dict[str, list[float]] = {
        "intake (posted -> message stored)": [],
        "reply written, from the window's end (received + window -> reply queued)": [],
        "send start, from the window's end (received + window -> first attempt)": [],
        "send (first attempt -> provider accepted)": [],
    }
    replies = Message.objects.filter(
        direction="out",
        reply_to__isnull=False,
        conversation__lead__phone__in=[f"+{p}" for p in phones],
    ).select_related("reply_to", "conversation__lead")
    answered = set(
        AgentRun.objects.filter(message__in=[r.reply_to_id for r in replies]).values_list(
            "message_id", flat=True
        )
    )
    attempts: dict[int, float] = {}
    for message_id, started in DeliveryAttempt.objects.filter(
        message__in=[r.pk for r in replies]
    ).values_list("message_id", "started_at"):
        at = started.timestamp()
        attempts[message_id] = min(attempts.get(message_id, at), at)
    for reply in replies:
        phone = reply.conversation.lead.phone.lstrip("+")
        if phone not in accepted or reply.reply_to_id not in answered or reply.pk not in attempts:
            continue
        stored = reply.reply_to.created_at.timestamp()
        # The window counts from the webhook's arrival; intake runs inside it.
        window_end = reply.reply_to.arrived_at.timestamp() + window
        parts["intake (posted -> message stored)"].append(stored - posted[phone])
        parts["reply written, from the window's end (received + window -> reply queued)"].append(
            reply.created_at.timestamp() - window_end
        )
        parts["send start, from the window's end (received + window -> first attempt)"].append(
            attempts[reply.pk] - window_end
        )
        parts["send (first attempt -> provider accepted)"].append(
            accepted[phone] - attempts[reply.pk]
        )
    return {name: _stats(values) for name, values in parts.items()}


def machine() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }


def print_result(result: Result) -> None:
    s = result.summary()
    for name, stats in s["stages"].items():
        print(f"      {name}: p50 {stats['p50']} p95 {stats['p95']} max {stats['max']}")
    per_lead = ", ".join(
        f"{group} {seconds / max(result.leads, 1) * 1000:.0f}"
        for group, seconds in sorted(result.cpu.items(), key=lambda item: -item[1])
    )
    print(f"      CPU ms per lead: {per_lead}; cores busy {s['cpu_busy_share']}")
    if result.timeline:
        print(f"      cores busy per {TIMELINE_STEP} s: {' '.join(map(str, result.timeline))}")
    total, platform = s["total"], s["platform"]
    print(
        f"{result.broker:5} {result.scenario:26} leads {result.leads:4} msgs {result.messages:4} "
        f"answered {result.answered:4}  total p50 {total['p50']} p95 {total['p95']} "
        f"max {total['max']} s | platform p50 {platform['p50']} p95 {platform['p95']} "
        f"max {platform['max']} s | recovery {result.recovered} dup {result.duplicates} "
        f"| load {os.getloadavg()[0]:.1f} | yardstick {result.yardstick} ms",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", nargs="+", default=["redis", "orm"])
    parser.add_argument("--window", type=float, default=4.0, help="AGENT_BURST_WINDOW_SECONDS")
    parser.add_argument("--llm-delay", type=float, default=0.0, help="seconds per model call")
    parser.add_argument(
        "--no-plan-ahead",
        dest="plan_ahead",
        action="store_false",
        help="AGENT_PLAN_DURING_WINDOW=False: the model is asked once the window ends",
    )
    parser.add_argument("--flood", action="store_true", help="also the 2,000-message flood")
    parser.add_argument("--flood-only", action="store_true")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=["1", "10", "100", "100x10"],
        default=["1", "10", "100", "100x10"],
        help="which of the at-once scenarios (leads, or leads x chips)",
    )
    parser.add_argument("--workers", type=int, default=2, help="default cluster workers")
    parser.add_argument("--agent-workers", type=int, default=4, help="agent cluster workers")
    parser.add_argument("--timeout", type=float, default=600, help="per scenario")
    parser.add_argument("--json", help="write the summary here")
    args = parser.parse_args()

    url = os.environ.get(
        "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sdr_ops_bench_replies"
    )
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")
    recreate_database(url)
    # Production settings, as deployed (persistent database connections,
    # buffered metrics): the test settings open a connection per task and
    # write every counter inside the task's transaction, which made every
    # stage slower than deployed (issue 9's figures before 2026-11-24).
    production = {
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SALT_KEY": secrets.token_urlsafe(24),
        "SECURE_SSL_REDIRECT": "False",
        "DATABASE_URL": url,
        "TEST_DATABASE_URL": url,
        # The fake provider listens on 127.0.0.1.
        "PROVIDER_ALLOW_PRIVATE_URLS": "True",
        "Q_NAME": Q_NAME,
    }
    os.environ.update(production)
    import django

    django.setup()
    import redis
    from django.core.management import call_command
    from django.db import connection

    from tests.support.fake_openai import Answer, completion, running_fake_openai
    from tests.support.fake_provider import running_fake_provider
    from tests.support.processes import running_gunicorn, running_qcluster

    call_command("migrate", verbosity=0)
    at_start = machine()
    print(f"{at_start}", flush=True)
    scenarios = [
        scenario
        for key, scenario in [
            ("1", Scenario("1 lead, 1 chip", 1, 1)),
            ("10", Scenario("10 leads, 1 chip", 10, 1)),
            ("100", Scenario("100 leads, 1 chip", 100, 1)),
            ("100x10", Scenario("100 leads, 10 chips", 100, 10)),
        ]
        if key in args.scenarios
    ]
    if args.flood_only:
        scenarios = []
    flood = Scenario(
        "flood 2000 msgs/1400 leads",
        1400,
        10,
        # 600 leads write twice, 800 once: 2,000 deliveries.
        messages_per_lead=[2] * 600 + [1] * 800,
        rate=50.0,
    )
    results: list[Result] = []
    seq = [0, 0]
    with running_fake_openai() as llm, running_fake_provider() as provider:
        answer = completion(REPLY)
        llm.script(then=Answer(hang=args.llm_delay, body=answer.body) if args.llm_delay else answer)
        for broker in args.brokers:
            queues = redis.from_url(redis_url)
            for key in queues.scan_iter(f"django_q:{Q_NAME}*"):
                queues.delete(key)
            env = {
                **production,
                "Q_BROKER": broker,
                "REDIS_URL": redis_url,
                "OPENAI_API_KEY": "sk-bench",
                "OPENAI_BASE_URL": llm.url,
                "AGENT_BURST_WINDOW_SECONDS": str(args.window),
                "AGENT_PLAN_DURING_WINDOW": str(args.plan_ahead),
                "Q_AGENT_WORKERS": str(args.agent_workers),
                # Intake limits stay in the path but out of reach.
                "WEBHOOK_RATE_LIMIT_PER_MINUTE": str(10**9),
                "LOG_LEVEL": "WARNING",
            }
            with ExitStack() as stack:
                base = stack.enter_context(running_gunicorn(env=env, workers=2))
                stack.enter_context(
                    running_qcluster(
                        env=env, workers=args.workers, agent_workers=args.agent_workers
                    )
                )
                time.sleep(5)  # both clusters up and polling
                # The flood on the first broker only (the issue's: it takes minutes).
                with_flood = (args.flood or args.flood_only) and broker == args.brokers[0]
                runs = scenarios + ([flood] if with_flood else [])
                for scenario in runs:
                    result = run_scenario(
                        scenario, broker=broker, base=base, provider=provider, seq=seq, args=args
                    )
                    results.append(result)
                    print_result(result)
                    connection.close()
    summary = {
        "machine_at_start": at_start,
        "machine_at_end": machine(),
        "window_seconds": args.window,
        "llm_delay_seconds": args.llm_delay,
        "plan_ahead": args.plan_ahead,
        "default_workers": args.workers,
        "agent_workers": args.agent_workers,
        "results": [r.summary() for r in results],
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
