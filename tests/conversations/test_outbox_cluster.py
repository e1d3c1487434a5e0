"""The outbox driven by real `manage.py qcluster` processes against a real local provider.

These are the issue's "must show" cases: every provider answer through a real
worker; two clusters draining 1,000 messages over 10 chips without a double
send or a broken interval; the seeds' incident replayed; a worker killed with
SIGKILL mid-run losing nothing.
"""

import itertools
import os
import signal
import time
from collections import Counter, defaultdict

import pytest
from django.db.models import Count
from django_q.models import Schedule, Task
from django_q.tasks import async_task

from channels.models import Chip
from conversations.models import Conversation, DeliveryAttempt, Lead, Message
from conversations.outbox import PRIORITY_BY_PURPOSE
from tests.factories.channels import ChipFactory
from tests.support.fake_provider import (
    BAD_REQUEST,
    OK,
    SERVER_ERROR,
    UNAUTHORIZED,
    Reply,
    rate_limited,
    running_fake_provider,
)
from tests.support.processes import running_qcluster, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


@pytest.fixture(autouse=True)
def _only_the_tasks_we_enqueue():
    # The periodic sweeps would start drains of their own at the scheduler's
    # whim; these tests enqueue theirs explicitly to count what each did.
    Schedule.objects.filter(func__startswith="conversations.").delete()


@pytest.fixture
def fake_provider():
    with running_fake_provider() as provider:
        yield provider


def make_chips(provider_url, n, **kwargs):
    return [
        ChipFactory(
            provider="evolution",
            api_base_url=provider_url,
            instance_id=f"inst{i:02d}",
            api_token="evo-key",
            jitter_seconds=0,
            daily_cap=100_000,
            **kwargs,
        )
        for i in range(n)
    ]


def queue_messages(chips_and_counts, *, purpose=Message.Purpose.CAMPAIGN, first_lead=0):
    """Bulk-create leads, conversations and queued messages; returns their bodies."""
    leads = Lead.objects.bulk_create(
        [
            Lead(phone=f"+5511{9_000_000_00 + first_lead + i:09d}")
            for i in range(sum(c for _, c in chips_and_counts))
        ]
    )
    conversations, bodies = [], []
    leads_iter = iter(leads)
    for chip, count in chips_and_counts:
        for _ in range(count):
            conversations.append(Conversation(lead=next(leads_iter), chip=chip))
    Conversation.objects.bulk_create(conversations)
    messages = []
    for i, conversation in enumerate(conversations):
        body = f"{purpose}-{i:05d}"
        bodies.append(body)
        messages.append(
            Message(
                conversation=conversation,
                chip_id=conversation.chip_id,
                direction=Message.Direction.OUTBOUND,
                purpose=purpose,
                priority=PRIORITY_BY_PURPOSE[purpose],
                body=body,
                status=Message.Status.QUEUED,
            )
        )
    Message.objects.bulk_create(messages)
    return bodies


def sweep(*, seconds, cluster=None, times=1):
    for _ in range(times):
        options = {"cluster": cluster} if cluster else {}
        async_task("conversations.tasks.outbox_sweep", seconds, **options)


def sent_count():
    return Message.objects.filter(status=Message.Status.SENT).count()


def test_every_provider_answer_through_a_real_worker(fake_provider):
    (chip,) = make_chips(fake_provider.url, 1, min_interval_seconds=0)
    fake_provider.script(
        OK,
        BAD_REQUEST,
        UNAUTHORIZED,
        rate_limited(1),
        SERVER_ERROR,
        Reply(200, hang=10),  # longer than the HTTP timeout below
        then=OK,
    )
    queue_messages([(chip, 6)])
    env = {
        "OUTBOX_RETRY_BASE_SECONDS": "0.2",
        "OUTBOX_HTTP_TIMEOUT_SECONDS": "1",
        "CIRCUIT_FAILURE_THRESHOLD": "50",
    }

    with running_qcluster(env=env, workers=1) as cluster:
        sweep(seconds=30)
        wait_for(
            lambda: (
                Message.objects.filter(
                    status__in=[Message.Status.QUEUED, Message.Status.SENDING]
                ).count()
                == 0
            ),
            timeout=60,
            what="every message settled",
        )
        assert cluster.poll() is None

    statuses = Counter(Message.objects.values_list("status", flat=True))
    assert statuses == {Message.Status.SENT: 5, Message.Status.FAILED: 1}
    failed = Message.objects.get(status=Message.Status.FAILED)
    assert failed.outcome == Message.Outcome.FAILED_PERMANENT
    assert "HTTP 400" in failed.last_error
    outcomes = Counter(DeliveryAttempt.objects.values_list("outcome", flat=True))
    assert outcomes == {
        "sent": 5,
        "permanent": 1,
        "auth": 1,
        "rate_limited": 1,
        "transient": 2,  # the 500 and the timeout
    }
    timed_out = DeliveryAttempt.objects.get(outcome="transient", http_status__isnull=True)
    assert "timeout" in timed_out.error
    # Each message was accepted exactly once. (The hung request is answered
    # by the server after our client gave up: a timeout is ambiguous, so that
    # message is retried; the provider's own dedupe is the only cure.)
    requests = fake_provider.seen()
    answered = [r for r in requests if r.finished and r.finished - r.started < 1]
    hung = [r for r in requests if r not in answered]
    ok_bodies = [r.body["text"] for r in answered if r.status == 200]
    assert len(ok_bodies) == len(set(ok_bodies)) == 5
    sent_ids = Message.objects.filter(status="sent").values_list("provider_message_id", flat=True)
    assert set(sent_ids) == {r.message_id for r in answered if r.message_id}
    # The 429's Retry-After (1 s) held the whole chip.
    assert len(hung) == 1
    index = next(i for i, r in enumerate(requests) if r.status == 429)
    assert requests[index + 1].started - requests[index].finished >= 1.0


def test_two_clusters_drain_1000_messages_over_10_chips_exactly_once_and_paced(fake_provider):
    fast = make_chips(fake_provider.url, 5, min_interval_seconds=0)
    for i, chip in enumerate(fast):
        chip.instance_id = f"fast{i}"
        chip.save()
    slow = make_chips(fake_provider.url, 5, min_interval_seconds=1)
    for i, chip in enumerate(slow):
        chip.instance_id = f"slow{i}"
        chip.save()
    # The 1 s chips get fewer messages so the test finishes in reasonable time.
    bodies = queue_messages([(c, 180) for c in fast] + [(c, 20) for c in slow])
    assert len(bodies) == 1000

    started = time.monotonic()
    # Two clusters on one queue, as two machines would run them. Ten drains:
    # a cluster prefetches at most workers + workers**2 tasks, so both get some.
    with running_qcluster(workers=2) as cluster_a, running_qcluster(workers=2) as cluster_b:
        sweep(seconds=100, times=10)
        wait_for(lambda: sent_count() == 1000, timeout=240, interval=1, what="1000 sent")
        elapsed = time.monotonic() - started
        sweeps = Task.objects.filter(func="conversations.tasks.outbox_sweep")
        wait_for(lambda: sweeps.count() == 10, timeout=60, what="every drain finished")
        sent_by_cluster = Counter()
        for task in sweeps:
            assert task.success, task.result
            group = os.getpgid(task.result["pid"])
            cluster = {cluster_a.pid: "a", cluster_b.pid: "b"}[group]
            sent_by_cluster[cluster] += task.result["sent"]
        assert cluster_a.poll() is None
        assert cluster_b.poll() is None
    assert sum(sent_by_cluster.values()) == 1000
    assert sent_by_cluster["a"] > 0
    assert sent_by_cluster["b"] > 0

    requests = fake_provider.seen()
    # Exactly once: 1000 requests, one per message body.
    per_body = Counter(r.body["text"] for r in requests)
    assert len(requests) == 1000
    assert set(per_body) == set(bodies)
    assert max(per_body.values()) == 1
    assert Message.objects.filter(status=Message.Status.SENT).count() == 1000
    assert DeliveryAttempt.objects.count() == 1000
    provider_ids = set(Message.objects.values_list("provider_message_id", flat=True))
    assert provider_ids == {r.message_id for r in requests}
    attempts_by_chip = dict(
        DeliveryAttempt.objects.values_list("chip__instance_id").annotate(n=Count("id"))
    )
    assert all(attempts_by_chip[c.instance_id] == 180 for c in fast)
    # No chip's minimum interval was ever broken, as seen by the provider:
    # each request starts at least min_interval after the previous answer
    # went out (for the 0 s chips: never two requests in flight at once).
    interval = {c.instance_id: c.min_interval_seconds for c in [*fast, *slow]}
    by_chip = defaultdict(list)
    for request in requests:
        by_chip[request.chip_key].append(request)
    for key, chip_requests in by_chip.items():
        chip_requests.sort(key=lambda r: r.started)
        gaps = [b.started - a.finished for a, b in itertools.pairwise(chip_requests)]
        assert min(gaps) >= interval[key], f"{key}: smallest gap {min(gaps):.3f}s"
    print(
        f"\n1000 messages, 10 chips, 2 clusters x 2 workers: {elapsed:.1f}s; "
        f"sent per cluster {dict(sent_by_cluster)}"
    )


def test_100_conversations_on_one_chip_are_answered_while_its_campaign_keeps_its_interval(
    fake_provider,
):
    (chip,) = make_chips(fake_provider.url, 1, min_interval_seconds=2)
    campaign = queue_messages([(chip, 6)])

    with running_qcluster(workers=2) as cluster:
        # Two long drains stand in for the periodic sweep (removed above).
        sweep(seconds=90, times=2)
        wait_for(lambda: sent_count() >= 2, timeout=60, what="the campaign under way")
        # A hundred leads write back at once: their replies are queued mid-campaign.
        replies = queue_messages([(chip, 100)], purpose=Message.Purpose.REPLY, first_lead=1000)
        async_task("conversations.tasks.outbox_send_now")
        wait_for(lambda: sent_count() == 106, timeout=120, what="every message sent")
        assert cluster.poll() is None

    requests = sorted(fake_provider.seen(), key=lambda r: r.started)
    sent_replies = [r for r in requests if r.body["text"].startswith("reply-")]
    sent_campaign = [r for r in requests if r.body["text"].startswith("campaign-")]
    assert sorted(r.body["text"] for r in sent_replies) == sorted(replies)
    assert sorted(r.body["text"] for r in sent_campaign) == sorted(campaign)
    # The replies did not wait for the campaign's interval: they went out in
    # its gaps, many between two campaign messages.
    third = sent_campaign[2].started
    assert sum(1 for r in sent_replies if r.started < third) >= 3
    # The campaign kept its interval on the provider's clock, replies or not.
    gaps = [b.started - a.finished for a, b in itertools.pairwise(sent_campaign)]
    assert min(gaps) >= 2.0, gaps
    # One chip, never two requests in flight.
    assert all(b.started >= a.finished for a, b in itertools.pairwise(requests))


def test_the_incident_replayed_circuit_opens_then_one_probe_per_backoff_window(fake_provider):
    """Seeds: 2 sends, then 400 forever; the old breaker re-probed every 15 s."""
    (chip,) = make_chips(fake_provider.url, 1, min_interval_seconds=0)
    fake_provider.script(OK, OK, then=BAD_REQUEST)
    queue_messages([(chip, 50)])
    env = {
        "CIRCUIT_FAILURE_THRESHOLD": "5",
        "CIRCUIT_BACKOFF_BASE_SECONDS": "2",
        "CIRCUIT_BACKOFF_MAX_SECONDS": "8",
    }

    with running_qcluster(env=env, workers=2) as cluster:
        sweep(seconds=22, times=2)
        # 2 sends + 5 failures open it; then probes at about +2, +6 and +14 s.
        wait_for(lambda: fake_provider.count() >= 10, timeout=60, what="three probes")
        # The provider counts a request when it arrives; let the worker record
        # the last answer before the cluster stops.
        wait_for(
            lambda: DeliveryAttempt.objects.count() >= fake_provider.count(),
            timeout=30,
            what="every answer recorded",
        )
        assert cluster.poll() is None

    requests = fake_provider.seen()
    assert [r.status for r in requests[:7]] == [200, 200, 400, 400, 400, 400, 400]
    assert all(r.status == 400 for r in requests[7:])
    # After the circuit opened, the provider saw at most one request per
    # backoff window, each window twice the last (capped at 8 s).
    windows = [2, 4, 8, 8, 8]
    for n, (previous, probe) in enumerate(itertools.pairwise(requests[6:])):
        gap = probe.started - previous.finished
        assert gap >= windows[n], f"probe {n + 1} came {gap:.2f}s after the last failure"
    chip.refresh_from_db()
    assert chip.circuit_state in {Chip.CircuitState.OPEN, Chip.CircuitState.HALF_OPEN}
    assert chip.circuit_open_count == 1
    # Nothing is marked failed that never left: every failed message has the
    # one attempt the provider answered 400 to; the rest wait untouched.
    failed = Message.objects.filter(status=Message.Status.FAILED)
    assert failed.count() == len([r for r in requests if r.status == 400])
    for message in failed:
        (attempt,) = DeliveryAttempt.objects.filter(message=message)
        assert attempt.http_status == 400
    waiting = Message.objects.filter(status=Message.Status.QUEUED)
    assert waiting.count() == 50 - len(requests)
    assert not waiting.exclude(attempts=0).exists()


def test_a_worker_killed_mid_run_loses_nothing(fake_provider):
    chips = make_chips(fake_provider.url, 4, min_interval_seconds=0)
    # Slow answers, so the kill surely lands while requests are in flight.
    fake_provider.always(Reply(200, hang=0.05))
    bodies = queue_messages([(c, 50) for c in chips])
    env = {"OUTBOX_LEASE_SECONDS": "3"}

    with running_qcluster(env=env, workers=2) as cluster:
        sweep(seconds=60, times=2)
        wait_for(lambda: sent_count() >= 40, timeout=60, what="the run under way")
        os.killpg(cluster.pid, signal.SIGKILL)
        cluster.wait(timeout=10)
    assert sent_count() < 200
    in_flight = Message.objects.filter(status=Message.Status.SENDING).count()

    with running_qcluster(env=env, workers=2):
        sweep(seconds=60, times=2)
        wait_for(lambda: sent_count() == 200, timeout=120, interval=0.5, what="all 200 sent")

    assert not Message.objects.exclude(status=Message.Status.SENT).exists()
    per_body = Counter(r.body["text"] for r in fake_provider.seen())
    assert set(per_body) == set(bodies)  # every message reached the provider
    # Only a message whose worker died between the provider's answer and the
    # record can go twice (at-least-once for that window, never more).
    duplicates = sum(n - 1 for n in per_body.values())
    assert duplicates <= in_flight <= 2
