"""PostgreSQL restarted, then stopped for 10 s, under webhook load (a server of the
test's own): 503 with Retry-After while it is down, never 500; every delivery
stored exactly once; every lead answered by the normal path within seconds of
the database coming back, none left to the two-minute recovery."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from channels.models import Chip
from tests.reliability.conftest import scale
from tests.reliability.deliveries import Delivery, text_delivery
from tests.support.fake_provider import running_fake_provider
from tests.support.postgres import private_postgres
from tests.support.processes import manage, running_gunicorn, running_qcluster, wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

CLIENTS = 4
# Every lead is answered by the normal path within 110 s of the database
# coming back (the bounded run: seconds); the report shows how long it took.
# At full size that is a backlog of 600 turns, worked through by two agent
# workers (production runs four) on this 2-core machine.
ANSWERED_WITHIN_SECONDS = 110

MAKE_CHIP = """
import json
from tests.channels.webhooks import chip_for
chip = chip_for("zapi", api_base_url="{url}", instance_id="A20DA9C0183A2D35A260F53F5D2B9244",
                api_token="token", min_interval_seconds=0, jitter_seconds=0, daily_cap=10**6)
print(json.dumps({{"provider": chip.provider, "webhook_key": chip.webhook_key}}))
"""


def deliver_until_accepted(client: httpx.Client, delivery: Delivery, seen: Counter) -> None:
    """What a provider does: retry until a 2xx, waiting what a 503 asks (briefly)."""
    while True:
        try:
            response = client.post(delivery.path, content=delivery.body, headers=delivery.headers)
        except httpx.TransportError:
            seen["connection error"] += 1
            time.sleep(0.5)
            continue
        seen[response.status_code] += 1
        if response.status_code == 503:
            seen["503 with Retry-After"] += "Retry-After" in response.headers
            time.sleep(min(float(response.headers.get("Retry-After", 1)), 1.0))
            continue
        if response.status_code < 300 or response.status_code >= 500:
            return
        raise AssertionError(f"{response.status_code}: {response.text}")


def test_database_restart_and_outage_lose_nothing_and_answer_by_the_normal_path(report):
    total = scale(full=600, bounded=100)
    with private_postgres() as pg, running_fake_provider() as provider:
        pg.createdb("sdr_outage")
        database_url = pg.url("sdr_outage")
        env = {"TEST_DATABASE_URL": database_url, "AGENT_BURST_WINDOW_SECONDS": "0"}
        manage("migrate", "--no-input", "-v0", env=env)
        output = manage("shell", "-c", MAKE_CHIP.format(url=provider.url), env=env)
        made = json.loads(output.strip().splitlines()[-1])
        chip = Chip(provider=made["provider"], webhook_key=made["webhook_key"])
        deliveries = [text_delivery(chip, seq) for seq in range(total)]
        seen: Counter = Counter()

        with (
            running_gunicorn(env=env) as base,
            running_qcluster(env=env, workers=2, agent_workers=2),
            httpx.Client(base_url=base, timeout=30) as client,
        ):
            spacing = 30.0 / total  # the load spans the restart and the outage

            def send(delivery: Delivery) -> None:
                deliver_until_accepted(client, delivery, seen)

            def load() -> None:
                with ThreadPoolExecutor(CLIENTS) as pool:
                    for delivery in deliveries:
                        pool.submit(send, delivery)
                        time.sleep(spacing)

            loader = threading.Thread(target=load)
            loader.start()
            time.sleep(5)
            pg.restart()
            time.sleep(5)
            pg.stop()
            time.sleep(10)
            pg.start()
            back_at = time.monotonic()
            loader.join(timeout=300)
            assert not loader.is_alive()

            def answered() -> bool:
                with psycopg.connect(database_url) as db:
                    inbound, unanswered = db.execute(
                        """
                        SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (
                            SELECT 1 FROM conversations_message r WHERE r.reply_to_id = m.id))
                        FROM conversations_message m WHERE m.direction = 'in'
                        """
                    ).fetchone()
                    return inbound == total and unanswered == 0

            try:
                wait_for(answered, timeout=240, interval=0.5, what="every lead answered")
            except AssertionError as exc:
                with psycopg.connect(database_url) as db:
                    state = {
                        name: db.execute(sql).fetchall()
                        for name, sql in {
                            "events": "SELECT status, left(error, 200), count(*) "
                            "FROM channels_webhookevent GROUP BY 1, 2",
                            "messages": "SELECT direction, status, purpose, count(*) "
                            "FROM conversations_message GROUP BY 1, 2, 3",
                            "runs": "SELECT trigger, outcome, count(*) "
                            "FROM agent_agentrun GROUP BY 1, 2",
                            "failed tasks": "SELECT func, left(result, 300), count(*) "
                            "FROM django_q_task WHERE NOT success GROUP BY 1, 2",
                            "queued tasks": "SELECT count(*) FROM django_q_ormq",
                        }.items()
                    }
                raise AssertionError(f"{exc}: {state} seen={seen}") from None
            answered_after = time.monotonic() - back_at

        with psycopg.connect(database_url) as db:
            stored = Counter(
                row[0]
                for row in db.execute(
                    "SELECT provider_message_id FROM conversations_message WHERE direction = 'in'"
                )
            )
            replies = Counter(
                row[0]
                for row in db.execute(
                    "SELECT reply_to_id FROM conversations_message WHERE reply_to_id IS NOT NULL"
                )
            )
            recovered = db.execute(
                "SELECT count(*) FROM agent_agentrun WHERE trigger = 'recovery'"
            ).fetchone()[0]

    expected = {d.message_id for d in deliveries}
    lost = len(expected - set(stored))
    duplicated = sum(n - 1 for n in stored.values()) + sum(n - 1 for n in replies.values())
    server_errors = sum(n for key, n in seen.items() if isinstance(key, int) and key >= 500)
    report(
        scenario="database restart and 10 s stop",
        load=f"{total} deliveries over 30 s, {CLIENTS} clients, retried like a provider",
        faults=(
            f"restart, 10 s stop; {seen[503]} answers 503; "
            f"all answered {answered_after:.0f} s after it came back"
        ),
        lost=lost,
        duplicated=duplicated,
        **{"5xx": seen[500] + sum(n for key, n in seen.items() if key in (502, 504))},
    )
    assert seen[500] == 0, seen
    assert server_errors == seen[503], seen
    assert seen["503 with Retry-After"] == seen[503], seen
    assert lost == 0
    assert duplicated == 0
    assert recovered == 0
    assert answered_after <= ANSWERED_WITHIN_SECONDS, seen
