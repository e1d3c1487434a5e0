"""Every provider's deliveries, each sent three times in shuffled order by concurrent
clients against gunicorn while a real cluster processes them: one message per
provider id, one reply per lead, no 5xx."""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db.models import Count

from agent.models import AgentRun
from channels.models import WebhookEvent
from conversations.models import Message
from tests.channels.webhooks import chip_for
from tests.reliability.conftest import scale
from tests.reliability.deliveries import PROVIDERS, Delivery, text_delivery
from tests.support.fake_provider import running_fake_provider
from tests.support.processes import running_gunicorn, running_qcluster, wait_for

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

# The instance each real fixture names (an adapter refuses a body naming another).
INSTANCES = {
    "meta": "106540352242922",
    "evolution": "tigo1",
    "zapi": "A20DA9C0183A2D35A260F53F5D2B9244",
    "wapi": "",
    "sandbox": "",
}
CLIENTS = 16


def storm_chips(provider_url: str) -> dict:
    return {
        provider: chip_for(
            provider,
            api_base_url=provider_url,
            instance_id=INSTANCES[provider],
            api_token="token",
            min_interval_seconds=0,
            jitter_seconds=0,
            daily_cap=1_000_000,
        )
        for provider in PROVIDERS
    }


def deliver_all(base: str, deliveries: list[Delivery]) -> Counter:
    """POST each delivery once, CLIENTS at a time; the status codes seen."""
    with httpx.Client(
        base_url=base, timeout=30, limits=httpx.Limits(max_connections=CLIENTS)
    ) as client:

        def post(delivery: Delivery) -> int:
            response = client.post(delivery.path, content=delivery.body, headers=delivery.headers)
            return response.status_code

        with ThreadPoolExecutor(CLIENTS) as pool:
            return Counter(pool.map(post, deliveries))


def state() -> dict:
    """Where a scenario stands, for a failure message."""
    return {
        "events": dict(Counter(WebhookEvent.objects.values_list("status", flat=True))),
        "inbound": Message.objects.filter(direction=Message.Direction.INBOUND).count(),
        "outbound": dict(
            Counter(
                Message.objects.filter(direction=Message.Direction.OUTBOUND).values_list(
                    "status", flat=True
                )
            )
        ),
        "runs": dict(Counter(AgentRun.objects.values_list("outcome", flat=True))),
    }


def test_duplicate_storm_stores_each_message_once_and_answers_each_lead_once(report):
    total = scale(full=2000, bounded=100)
    env = {
        # What is measured here is deduplication, not the per-chip intake limit.
        "WEBHOOK_RATE_LIMIT_PER_MINUTE": "1000000",
        "AGENT_BURST_WINDOW_SECONDS": "0",
        "OPENAI_API_KEY": "",
    }
    with running_fake_provider() as provider:
        chips = storm_chips(provider.url)
        unique = [text_delivery(chips[PROVIDERS[seq % 5]], seq) for seq in range(total)]
        storm = unique * 3
        random.Random(13).shuffle(storm)

        with running_gunicorn(env=env) as base, running_qcluster(env=env, workers=2):
            statuses = deliver_all(base, storm)

            def settled() -> bool:
                pending = WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED)
                answered = Message.objects.filter(
                    direction=Message.Direction.OUTBOUND, reply_to__isnull=False
                )
                return not pending.exists() and answered.count() >= total

            try:
                wait_for(settled, timeout=120 + total, interval=1, what="all answered")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {state()} statuses={statuses}") from None

    inbound = Message.objects.filter(direction=Message.Direction.INBOUND)
    stored = Counter(inbound.values_list("chip__provider", "provider_message_id"))
    expected = {(d.provider, d.message_id) for d in unique}
    replies = Counter(
        Message.objects.filter(
            direction=Message.Direction.OUTBOUND, reply_to__isnull=False
        ).values_list("reply_to_id", flat=True)
    )
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    lost = len(expected - set(stored))
    duplicated = sum(n - 1 for n in stored.values()) + sum(n - 1 for n in replies.values())
    report(
        scenario="duplicate storm",
        load=f"{total} messages x 3 deliveries, 5 providers, {CLIENTS} clients",
        faults="every delivery repeated, shuffled",
        lost=lost,
        duplicated=duplicated,
        **{"5xx": server_errors},
    )

    assert server_errors == 0, statuses
    assert set(statuses) == {200}, statuses
    assert set(stored) == expected
    assert lost == 0
    assert duplicated == 0
    assert set(replies) == set(inbound.values_list("pk", flat=True))
    assert not WebhookEvent.objects.exclude(
        status__in=[WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED]
    ).exists()
    # Every lead answered by the normal path, none left to the stuck recovery.
    assert not AgentRun.objects.filter(trigger=AgentRun.Trigger.RECOVERY).exists()
    assert (
        WebhookEvent.objects.values("dedupe_key").annotate(n=Count("id")).filter(n__gt=1).count()
        == 0
    )
