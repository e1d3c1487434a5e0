"""Webhook intake against the ceiling of durable ingestion through Django, in one run.

Builds a throwaway PostgreSQL database, then serves in turn, each with
gunicorn (sync, 2 workers) on 127.0.0.1, the bare view (bench/intake_bare.py:
no middleware, one INSERT of the posted JSON) and the platform (production
settings) with the ORM broker and with the Redis broker, alternating rounds:
bare, platform ORM, bare, platform Redis, ... wrk posts real-shaped Z-API text
messages with unique ids on 16 connections. After each round it reads back
from the database that every 2xx answer left exactly one stored event (and,
for the platform, one queued task), and prints requests/s, p50/p99 latency,
SQL statements and commits per request, server CPU per request, and each
platform round's ratio to the mean of the bare rounds around it.

    .venv/bin/python bench/intake.py [--cycles 2] [--duration 10]
    .venv/bin/python bench/intake.py --profile orm --requests 2000 > profile.txt

`--profile` runs requests through the WSGI app in-process under pyinstrument
instead (no load, no gunicorn) and prints the call tree of the hot path.

Needs `wrk` (apt-get install wrk), PostgreSQL and Redis on 127.0.0.1.
BENCH_DATABASE_URL (default .../sdr_ops_bench_intake) is dropped and
re-created: never point it at real data. BENCH_REDIS_URL defaults to
redis://127.0.0.1:6379/5; only the bench's own queue key there is touched.
"""

import argparse
import io
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.common import recreate_database  # noqa: E402

PAYLOAD = BASE_DIR / "tests/fixtures/payloads/zapi/received__text.json"
CLUSTER_NAME = "bench_intake"
ZAPI_TOKEN = "bench-zapi-token"  # noqa: S105 - a throwaway chip in a throwaway database
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Round:
    number: int
    target: str  # bare, orm, redis
    chip_id: int | None = None
    load: dict = field(default_factory=dict)
    stored: int = 0
    answered: int = 0
    tasks: int = 0
    statements: int = 0
    redis_connections: int = 0
    commits: int = 0
    worker_cpu_ms: float = 0.0
    db_cpu_ms: float = 0.0
    load_average: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.load["requests"] / (self.load["duration_us"] / 1e6)

    def per_request(self, value: float) -> float:
        return value / self.stored if self.stored else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=2, help="bare/ORM/bare/Redis cycles")
    parser.add_argument(
        "--brokers",
        default="orm,redis",
        help="platform rounds per cycle, each after a bare round (orm, redis or both)",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per round")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before measuring")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--profile", choices=["orm", "redis"], help="profile in-process instead")
    parser.add_argument("--requests", type=int, default=2000, help="requests profiled")
    args = parser.parse_args()
    if not set(args.brokers.split(",")) <= {"orm", "redis"}:
        parser.error("--brokers takes orm, redis or orm,redis")

    database_url = os.environ.get(
        "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sdr_ops_bench_intake"
    )
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
    recreate_database(database_url)
    platform_env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SALT_KEY": secrets.token_urlsafe(24),
        "SECURE_SSL_REDIRECT": "False",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "Q_BROKER": args.profile or "orm",
        "Q_NAME": CLUSTER_NAME,
        # One chip takes the whole load here: keep the per-chip intake limits in
        # the path (their cost counts) but out of reach.
        "WEBHOOK_RATE_LIMIT_PER_MINUTE": str(10**9),
        "WEBHOOK_STORAGE_BUDGET_BYTES_PER_HOUR": str(10**15),
    }
    os.environ.update(platform_env)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, connections

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE bench_bare_event (id bigserial PRIMARY KEY, round integer NOT NULL,"
            " payload jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now())"
        )
    if args.profile:
        profile(args.requests)
        return

    rounds = []
    for _cycle in range(args.cycles):
        for broker in args.brokers.split(","):
            for target in ("bare", broker):
                rounds.append(Round(number=len(rounds) + 1, target=target))
    for round_ in rounds:
        if round_.target != "bare":
            round_.chip_id = _chip_create(round_.number)
    connections.close_all()
    _redis_queue_clear(redis_url)

    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, commit {_git_head()}, "
        f"load average {os.getloadavg()[0]:.2f}; {args.cycles} cycles, {args.duration} s "
        f"per round after {args.warmup} s warm-up, wrk {args.threads} threads "
        f"{args.connections} connections, gunicorn sync x{args.workers}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as workdir:
        for round_ in rounds:
            _round_run(round_, args, Path(workdir), platform_env, database_url, redis_url)
            _round_print(round_)
    _redis_queue_clear(redis_url)
    _summary_print(rounds)


def _chip_create(number: int) -> int:
    from channels.models import Chip

    return Chip.objects.create(
        name=f"bench intake {number}",
        provider="zapi",
        status=Chip.Status.CONNECTED,
        webhook_key=f"bench-intake-{number}-{secrets.token_urlsafe(16)}",
        instance_id="A20DA9C0183A2D35A260F53F5D2B9244",
        webhook_token=ZAPI_TOKEN,
    ).pk


def _round_run(
    round_: Round,
    args: argparse.Namespace,
    workdir: Path,
    platform_env: dict[str, str],
    database_url: str,
    redis_url: str,
) -> None:
    counts_dir = workdir / f"counts-{round_.number}"
    counts_dir.mkdir()
    env = {**os.environ, "BENCH_COUNTS_DIR": str(counts_dir), "PYTHONUNBUFFERED": "1"}
    if round_.target == "bare":
        app, path = "bench.intake_bare:application", f"/bare/{round_.number}/"
        env = {key: value for key, value in env.items() if key not in platform_env}
        env["DATABASE_URL"] = database_url
    else:
        from channels.models import Chip

        key = Chip.objects.values_list("webhook_key", flat=True).get(pk=round_.chip_id)
        connections_close()
        app, path = "config.wsgi:application", f"/webhooks/zapi/{key}/"
        env.update(platform_env, Q_BROKER=round_.target)

    commits_before = _commits(database_url)
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            str(BASE_DIR / "bench/intake_gunicorn.py"),
            "--workers",
            str(args.workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--chdir",
            str(BASE_DIR),
            app,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_ready(port)
        url = f"http://127.0.0.1:{port}{path}"
        ids_files = [workdir / f"ids-{round_.number}-warm", workdir / f"ids-{round_.number}"]
        _wrk(url, args, f"r{round_.number}w", args.warmup, ids_files[0])
        cpu_before = _cpu_ticks(_children(server.pid)), _cpu_ticks(_backends(database_url))
        round_.load = _wrk(url, args, f"r{round_.number}m", args.duration, ids_files[1])
        # The 1-minute load average at the end of the measured seconds: the
        # machine is shared, and the figures only compare at a similar load.
        round_.load_average = os.getloadavg()[0]
        cpu_after = _cpu_ticks(_children(server.pid)), _cpu_ticks(_backends(database_url))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    measured = round_.load["requests"] or 1
    round_.worker_cpu_ms = (cpu_after[0] - cpu_before[0]) * 1000 / CLOCK_TICKS / measured
    round_.db_cpu_ms = (cpu_after[1] - cpu_before[1]) * 1000 / CLOCK_TICKS / measured
    for counts_file in counts_dir.iterdir():
        counts = json.loads(counts_file.read_text())
        round_.statements += counts["statements"]
        round_.redis_connections += counts["redis_connections"]
    round_.commits = _commits_settled(database_url) - commits_before
    _round_verify(round_, ids_files, database_url, redis_url)


def connections_close() -> None:
    from django.db import connections

    connections.close_all()


def _round_verify(round_: Round, ids_files: list[Path], database_url: str, redis_url: str) -> None:
    """Every 2xx answer left exactly one stored event (and one queued task)."""
    import psycopg

    answered = [int(line) for f in ids_files for line in f.read_text().split()]
    round_.answered = len(answered)
    with psycopg.connect(database_url, autocommit=True) as conn:
        if round_.target == "bare":
            rows = conn.execute(
                "SELECT id, payload->>'messageId' FROM bench_bare_event WHERE round = %s",
                [round_.number],
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT id, dedupe_key FROM channels_webhookevent WHERE chip_id = %s",
                [round_.chip_id],
            ).fetchall()
            if round_.target == "orm":
                round_.tasks = conn.execute(
                    "SELECT count(*) FROM django_q_ormq WHERE key = %s", [CLUSTER_NAME]
                ).fetchone()[0]
                conn.execute("DELETE FROM django_q_ormq WHERE key = %s", [CLUSTER_NAME])
    if round_.target == "redis":
        import redis

        client = redis.from_url(redis_url)
        round_.tasks = client.llen(f"django_q:{CLUSTER_NAME}:q")
        client.delete(f"django_q:{CLUSTER_NAME}:q")
        client.close()
    round_.stored = len(rows)
    stored_ids = {row[0] for row in rows}
    if len({row[1] for row in rows}) != len(rows):
        round_.problems.append("a message id was stored twice")
    if len(set(answered)) != len(answered):
        round_.problems.append("two 2xx answers named the same event")
    missing = set(answered) - stored_ids
    if missing:
        round_.problems.append(f"{len(missing)} answered events not stored")
    # wrk stops with at most one request in flight per connection: the server
    # may store those without wrk reading the answer.
    unread = round_.stored - len(answered)
    if not 0 <= unread <= 2 * 64:
        round_.problems.append(f"{unread} stored events were never answered")
    if round_.target != "bare" and round_.tasks != round_.stored:
        round_.problems.append(f"{round_.tasks} tasks queued for {round_.stored} events")


def _wrk(url: str, args: argparse.Namespace, prefix: str, seconds: int, ids_file: Path) -> dict:
    body = json.loads(PAYLOAD.read_text())
    body["messageId"] = "\0"
    head, tail = json.dumps(body).split("\\u0000")
    result = subprocess.run(
        [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(BASE_DIR / "bench/intake.lua"),
            url,
        ],
        env={
            **os.environ,
            "BENCH_BODY_HEAD": head,
            "BENCH_BODY_TAIL": tail,
            "BENCH_ID_PREFIX": prefix,
            "BENCH_TOKEN": ZAPI_TOKEN,
            "BENCH_IDS_FILE": str(ids_file),
        },
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /ready-probe HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                if sock.recv(16).startswith(b"HTTP/"):
                    return
        except OSError:
            time.sleep(0.1)
    sys.exit("the server did not start within 60 s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _backends(database_url: str) -> list[int]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return [row[0] for row in rows]


def _cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def _commits(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()[0]


def _commits_settled(database_url: str) -> int:
    """The commit count once the round's backends have exited and reported."""
    deadline = time.monotonic() + 15
    while _backends(database_url) and time.monotonic() < deadline:
        time.sleep(0.1)
    previous, current = -1, _commits(database_url)
    while previous != current and time.monotonic() < deadline:
        time.sleep(0.5)
        previous, current = current, _commits(database_url)
    return current


def _redis_queue_clear(redis_url: str) -> None:
    import redis

    client = redis.from_url(redis_url)
    client.delete(f"django_q:{CLUSTER_NAME}:q")
    client.close()


def _git_head() -> str:
    result = subprocess.run(
        ["git", "-C", str(BASE_DIR), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() or "unknown"


def _round_print(r: Round) -> None:
    load = r.load
    errors = sum(load[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    print(
        f"round {r.number:2d} {r.target:5s} {r.rps:7.0f} req/s  p50 {load['p50_us'] / 1000:5.1f} ms"
        f"  p99 {load['p99_us'] / 1000:6.1f} ms  statements/req {r.per_request(r.statements):4.1f}"
        f"  commits/req {r.per_request(r.commits):4.2f}"
        f"  redis conn/req {r.per_request(r.redis_connections):4.2f}"
        f"  CPU/req web {r.worker_cpu_ms:4.2f} ms db {r.db_cpu_ms:4.2f} ms"
        f"  load {r.load_average:4.1f}"
        f"  non-2xx {load['non2xx']} errors {errors}  stored {r.stored} = {r.answered} 2xx"
        f" + {r.stored - r.answered} unread  {'; '.join(r.problems) or 'OK'}",
        flush=True,
    )


def _summary_print(rounds: list[Round]) -> None:
    print("\nratio = platform req/s / mean of the bare rounds before and after it")
    ratios: dict[str, list[float]] = {"orm": [], "redis": []}
    for index, r in enumerate(rounds):
        if r.target == "bare":
            continue
        around = [
            rounds[i].rps
            for i in (index - 1, index + 1)
            if 0 <= i < len(rounds) and rounds[i].target == "bare"
        ]
        ratios[r.target].append(r.rps / statistics.mean(around))
    for target in ("bare", "orm", "redis"):
        these = [r for r in rounds if r.target == target]
        if not these:
            continue
        line = (
            f"{target:5s} median {statistics.median(r.rps for r in these):7.0f} req/s"
            f"  p50 {statistics.median(r.load['p50_us'] for r in these) / 1000:5.1f} ms"
            f"  p99 {statistics.median(r.load['p99_us'] for r in these) / 1000:6.1f} ms"
            f"  commits/req {statistics.median(r.per_request(r.commits) for r in these):4.2f}"
            f"  statements/req {statistics.median(r.per_request(r.statements) for r in these):4.1f}"
            f"  CPU/req web {statistics.median(r.worker_cpu_ms for r in these):4.2f} ms"
        )
        if target in ratios:
            line += "  ratio " + ", ".join(f"{x:.2f}" for x in ratios[target])
        print(line)
    if any(r.problems for r in rounds):
        sys.exit("some rounds broke a promise (see above)")


def profile(requests: int) -> None:
    """Run `requests` deliveries through the WSGI app in-process under pyinstrument."""
    from django.db import connections
    from pyinstrument import Profiler

    from config.wsgi import application

    key = _chip_webhook_key(_chip_create(0))
    body = json.loads(PAYLOAD.read_text())

    def post(n: int) -> None:
        body["messageId"] = f"profile-{n}"
        data = json.dumps(body).encode()
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": f"/webhooks/zapi/{key}/",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(data),
            "CONTENT_LENGTH": str(len(data)),
            "CONTENT_TYPE": "application/json",
            "HTTP_Z_API_TOKEN": ZAPI_TOKEN,
        }
        statuses = []
        response = application(environ, lambda status, headers: statuses.append(status))
        b"".join(response)
        response.close()
        if not statuses[0].startswith("200"):
            sys.exit(f"unexpected answer {statuses[0]}")

    for n in range(200):  # warm caches and the connection
        post(-n - 1)
    profiler = Profiler(interval=0.0002)
    profiler.start()
    for n in range(requests):
        post(n)
    profiler.stop()
    connections.close_all()
    print(profiler.output_text(unicode=True, color=False, show_all=False))


def _chip_webhook_key(chip_id: int) -> str:
    from channels.models import Chip

    return Chip.objects.values_list("webhook_key", flat=True).get(pk=chip_id)


if __name__ == "__main__":
    main()
