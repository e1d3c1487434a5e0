"""The outbox service against a real local HTTP provider (in-process drains).

The qcluster-driven tests are in test_outbox_cluster.py; these exercise the
same services one drain at a time so each rule is visible on its own.
"""

import os
import subprocess
import sys
from datetime import time, timedelta

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from channels.models import Chip
from conversations import outbox, tasks
from conversations.models import Conversation, DeliveryAttempt, Message
from core.models import MetricCounter
from tests.factories.campaigns import CampaignFactory, CampaignRecipientFactory
from tests.factories.conversations import ConversationFactory, OutboundMessageFactory
from tests.support.fake_provider import (
    BAD_REQUEST,
    OK,
    SERVER_ERROR,
    UNAUTHORIZED,
    Reply,
    rate_limited,
)

pytestmark = pytest.mark.django_db


def queue(chip, n=1, **kwargs):
    return [
        OutboundMessageFactory(conversation=ConversationFactory(chip=chip), **kwargs)
        for _ in range(n)
    ]


def counter(name, **labels):
    import json

    row = MetricCounter.objects.filter(name=name, labels=json.dumps(labels, sort_keys=True)).first()
    return row.value if row else 0


def test_a_queued_message_is_sent_once_and_every_attempt_is_kept(fake_provider, provider_chip):
    chip = provider_chip()
    (message,) = queue(chip, body="Oi, tudo bem?")

    report = outbox.outbox_drain()

    assert report.sent == 1
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.outcome == Message.Outcome.SENT
    assert message.attempts == 1
    assert message.lease_expires_at is None
    (request,) = fake_provider.seen()
    assert message.provider_message_id == request.message_id
    assert request.path == f"/message/sendText/{chip.instance_id}"
    assert request.headers["apikey"] == "evo-key"
    assert request.body == {
        "number": message.conversation.lead.phone.lstrip("+"),
        "text": "Oi, tudo bem?",
    }
    attempt = DeliveryAttempt.objects.get(message=message)
    assert attempt.outcome == DeliveryAttempt.Outcome.SENT
    assert attempt.http_status == 200
    assert attempt.provider_message_id == request.message_id
    chip.refresh_from_db()
    assert chip.last_sent_at is not None
    assert counter("outbound_messages_total", outcome="sent") == 1
    assert (
        counter(
            "integration_requests_total",
            integration="evolution",
            operation="send_text",
            outcome="ok",
        )
        == 1
    )
    # Nothing left: a second drain sends nothing.
    assert outbox.outbox_drain().attempts == 0
    assert fake_provider.count() == 1


def test_replies_go_before_campaign_messages(fake_provider, provider_chip):
    chip = provider_chip()
    campaign_messages = queue(chip, 3, purpose=Message.Purpose.CAMPAIGN, priority=0)
    (reply,) = queue(chip, purpose=Message.Purpose.REPLY, priority=100, body="resposta")

    outbox.outbox_drain()

    first = fake_provider.seen()[0]
    assert first.body["text"] == "resposta"
    assert fake_provider.count() == 4
    assert (
        Message.objects.filter(pk__in=[m.pk for m in [reply, *campaign_messages]])
        .filter(status=Message.Status.SENT)
        .count()
        == 4
    )


def test_enqueue_sets_priority_and_kicks_a_sender_after_commit(
    provider_chip, django_capture_on_commit_callbacks
):
    from django_q.models import OrmQ

    conversation = ConversationFactory(chip=provider_chip())
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        message = outbox.outbox_enqueue(
            conversation=conversation, body="oi", purpose=Message.Purpose.REPLY
        )
    assert len(callbacks) == 1
    assert message.priority == outbox.PRIORITY_BY_PURPOSE[Message.Purpose.REPLY]
    assert message.status == Message.Status.QUEUED
    assert OrmQ.objects.count() == 1
    assert "outbox_send_now" in OrmQ.objects.get().task["func"]


def test_the_minimum_interval_holds_the_second_campaign_message(fake_provider, provider_chip):
    chip = provider_chip(min_interval_seconds=30, jitter_seconds=0)
    queue(chip, 2, purpose=Message.Purpose.CAMPAIGN)

    outbox.outbox_drain()

    assert fake_provider.count() == 1
    chip.refresh_from_db()
    assert chip.next_proactive_at >= timezone.now() + timedelta(seconds=29)
    assert Message.objects.filter(status=Message.Status.QUEUED).count() == 1
    # When the interval has passed the next one goes.
    Chip.objects.filter(pk=chip.pk).update(next_proactive_at=timezone.now() - timedelta(seconds=1))
    outbox.outbox_drain()
    assert fake_provider.count() == 2


def test_transient_errors_back_off_then_fail_after_max_attempts(
    fake_provider, provider_chip, settings
):
    settings.OUTBOX_MAX_ATTEMPTS = 3
    settings.OUTBOX_RETRY_BASE_SECONDS = 60
    fake_provider.always(SERVER_ERROR)
    chip = provider_chip()
    (message,) = queue(chip)

    before = timezone.now()
    outbox.outbox_drain()
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.outcome == Message.Outcome.FAILED_PROVIDER
    assert message.attempts == 1
    assert message.next_attempt_at >= before + timedelta(seconds=60)
    assert "HTTP 500" in message.last_error

    # Second attempt doubles the wait.
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    before = timezone.now()
    outbox.outbox_drain()
    message.refresh_from_db()
    assert message.attempts == 2
    assert message.next_attempt_at >= before + timedelta(seconds=120)

    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    outbox.outbox_drain()
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.outcome == Message.Outcome.FAILED_PROVIDER
    assert message.failed_at is not None
    assert DeliveryAttempt.objects.filter(message=message).count() == 3
    assert fake_provider.count() == 3


def test_a_429_waits_for_its_retry_after_on_message_and_chip(
    fake_provider, provider_chip, settings
):
    settings.OUTBOX_RETRY_BASE_SECONDS = 1
    fake_provider.script(rate_limited(120))
    chip = provider_chip()
    (message,) = queue(chip)

    before = timezone.now()
    outbox.outbox_drain()

    message.refresh_from_db()
    chip.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.next_attempt_at >= before + timedelta(seconds=119)
    assert chip.next_send_at >= before + timedelta(seconds=119)
    attempt = DeliveryAttempt.objects.get(message=message)
    assert attempt.outcome == DeliveryAttempt.Outcome.RATE_LIMITED
    assert attempt.http_status == 429


def test_a_permanent_error_fails_at_once_with_the_reason(fake_provider, provider_chip):
    fake_provider.script(BAD_REQUEST)
    (message,) = queue(provider_chip())

    outbox.outbox_drain()

    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.outcome == Message.Outcome.FAILED_PERMANENT
    assert message.attempts == 1
    assert "HTTP 400" in message.last_error
    assert counter("outbound_messages_total", outcome="failed_permanent") == 1


def test_an_unknown_number_fails_without_touching_the_circuit(fake_provider, provider_chip):
    fake_provider.always(
        Reply(
            400,
            {
                "status": 400,
                "error": "Bad Request",
                "response": {"message": [{"exists": False, "jid": "x", "number": "5511"}]},
            },
        )
    )
    chip = provider_chip()
    messages = queue(chip, 6)

    outbox.outbox_drain()

    chip.refresh_from_db()
    assert chip.circuit_state == Chip.CircuitState.CLOSED
    assert chip.consecutive_failures == 0
    assert all(
        m.status == Message.Status.FAILED
        for m in Message.objects.filter(pk__in=[m.pk for m in messages])
    )


def test_auth_errors_are_retried_and_count_towards_the_circuit(fake_provider, provider_chip):
    fake_provider.always(UNAUTHORIZED)
    chip = provider_chip()
    (message,) = queue(chip)

    outbox.outbox_drain()

    message.refresh_from_db()
    chip.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert chip.consecutive_failures == 1
    assert DeliveryAttempt.objects.get().outcome == DeliveryAttempt.Outcome.AUTH


def test_a_hanging_provider_times_out_as_transient(fake_provider, provider_chip, settings):
    settings.OUTBOX_HTTP_TIMEOUT_SECONDS = 0.5
    fake_provider.script(Reply(200, hang=5))
    (message,) = queue(provider_chip())

    outbox.outbox_drain()

    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert "timeout" in message.last_error
    assert DeliveryAttempt.objects.get().outcome == DeliveryAttempt.Outcome.TRANSIENT


def test_polite_429s_wait_what_they_ask_and_never_open_the_circuit(
    fake_provider, provider_chip, settings
):
    settings.OUTBOX_RETRY_BASE_SECONDS = 1
    settings.OUTBOX_MAX_ATTEMPTS = 20
    fake_provider.always(rate_limited(20))
    chip = provider_chip()
    (message,) = queue(chip)

    for _ in range(settings.CIRCUIT_FAILURE_THRESHOLD + 2):
        Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
        Chip.objects.filter(pk=chip.pk).update(next_send_at=None)
        outbox.outbox_drain()

    chip.refresh_from_db()
    assert fake_provider.count() == settings.CIRCUIT_FAILURE_THRESHOLD + 2
    assert chip.circuit_state == Chip.CircuitState.CLOSED
    assert chip.consecutive_failures == 0
    assert chip.next_send_at <= timezone.now() + timedelta(seconds=21)


def test_a_429_without_retry_after_still_counts_towards_the_circuit(fake_provider, provider_chip):
    fake_provider.always(Reply(status=429, body={"error": "too many"}))
    chip = provider_chip()
    queue(chip)

    outbox.outbox_drain()

    chip.refresh_from_db()
    assert chip.consecutive_failures == 1


def test_circuit_opens_after_five_failures_and_waiting_messages_are_not_burned(
    fake_provider, provider_chip, settings
):
    settings.CIRCUIT_BACKOFF_BASE_SECONDS = 300
    fake_provider.always(SERVER_ERROR)
    chip = provider_chip()
    messages = queue(chip, 8)

    outbox.outbox_drain()

    assert fake_provider.count() == 5
    chip.refresh_from_db()
    assert chip.circuit_state == Chip.CircuitState.OPEN
    assert chip.circuit_open_count == 1
    assert chip.circuit_retry_at >= timezone.now() + timedelta(seconds=290)
    never_sent = Message.objects.filter(pk__in=[m.pk for m in messages], attempts=0)
    assert never_sent.count() == 3
    assert set(never_sent.values_list("status", flat=True)) == {Message.Status.QUEUED}
    assert not Message.objects.filter(status=Message.Status.FAILED).exists()

    # The probe: exactly one request when the wait is over; success closes it.
    fake_provider.always(OK)
    Chip.objects.filter(pk=chip.pk).update(circuit_retry_at=timezone.now())
    chip.refresh_from_db()
    claim = outbox.outbox_claim_next()
    assert claim.probe
    chip.refresh_from_db()
    assert chip.circuit_state == Chip.CircuitState.HALF_OPEN
    assert outbox.outbox_claim_next() is None  # nobody else while the probe is out
    with outbox.provider_client() as client:
        outbox.outbox_send_claimed(claim=claim, client=client)
    chip.refresh_from_db()
    assert chip.circuit_state == Chip.CircuitState.CLOSED
    assert chip.consecutive_failures == 0


def test_restricted_chip_is_quarantined_campaigns_paused_and_ops_alerted(
    fake_provider, provider_chip, settings, caplog, django_capture_on_commit_callbacks
):
    settings.SLACK_WEBHOOK_URL = f"{fake_provider.url}/slack/hook"
    chip = provider_chip(provider="sandbox")
    other = provider_chip(provider="sandbox")
    alone = CampaignFactory(status=Campaign.Status.RUNNING, chips=[chip])
    shared = CampaignFactory(status=Campaign.Status.RUNNING, chips=[chip, other])
    recipient = CampaignRecipientFactory(campaign=alone)
    conversation = ConversationFactory(chip=chip, lead=recipient.lead)
    message = OutboundMessageFactory(
        conversation=conversation, purpose=Message.Purpose.CAMPAIGN, campaign=alone
    )
    recipient.message = message
    recipient.save()
    fake_provider.script(Reply(403, {"kind": "restricted", "error": "number restricted"}))

    with django_capture_on_commit_callbacks(execute=True):
        outbox.outbox_drain()

    chip.refresh_from_db()
    assert chip.status == Chip.Status.RESTRICTED
    assert not chip.can_prospect
    assert not chip.can_follow_up
    alone.refresh_from_db()
    shared.refresh_from_db()
    assert alone.status == Campaign.Status.PAUSED
    assert "restrito" in alone.paused_reason
    assert shared.status == Campaign.Status.RUNNING
    message.refresh_from_db()
    # It left once and was refused for the number, not for itself: it waits.
    assert message.status == Message.Status.QUEUED
    assert any(r.levelname == "ERROR" and "Chip restrito" in r.getMessage() for r in caplog.records)
    (slack,) = fake_provider.seen("/slack/hook")
    assert "Chip restrito" in slack.body["text"]


@pytest.mark.parametrize(
    ("purpose", "conversation_kwargs", "lead_opted_out", "reason"),
    [
        (Message.Purpose.REPLY, {"controlled_by": "human"}, False, "humano"),
        (Message.Purpose.REPLY, {"agent_paused": True}, False, "pausado"),
        (Message.Purpose.CAMPAIGN, {}, True, "opt-out"),
    ],
)
def test_messages_that_may_no_longer_leave_are_cancelled_with_the_reason(
    fake_provider, provider_chip, purpose, conversation_kwargs, lead_opted_out, reason
):
    conversation = ConversationFactory(chip=provider_chip(), **conversation_kwargs)
    conversation.lead.opted_out = lead_opted_out
    conversation.lead.save()
    message = OutboundMessageFactory(conversation=conversation, purpose=purpose)

    outbox.outbox_drain()

    message.refresh_from_db()
    assert message.status == Message.Status.CANCELLED
    assert message.outcome == Message.Outcome.CANCELLED
    assert reason in message.last_error
    assert fake_provider.count() == 0


def test_a_paused_campaigns_message_is_held_not_sent(fake_provider, provider_chip, settings):
    settings.OUTBOX_HOLD_SECONDS = 600
    chip = provider_chip()
    campaign = CampaignFactory(status=Campaign.Status.PAUSED, chips=[chip])
    (message,) = queue(chip, purpose=Message.Purpose.CAMPAIGN, campaign=campaign)

    outbox.outbox_drain()

    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.last_error == "Campanha pausada"
    assert message.next_attempt_at > timezone.now() + timedelta(seconds=590)
    assert fake_provider.count() == 0


def test_human_control_after_queueing_cancels_an_agent_reply(fake_provider, provider_chip):
    (message,) = queue(provider_chip(), purpose=Message.Purpose.REPLY)
    Conversation.objects.filter(pk=message.conversation_id).update(controlled_by="human")

    outbox.outbox_drain()

    message.refresh_from_db()
    assert message.status == Message.Status.CANCELLED
    assert fake_provider.count() == 0


@pytest.mark.parametrize(
    ("chip_kwargs", "purpose", "reason"),
    [
        ({"can_prospect": False}, Message.Purpose.CAMPAIGN, "prospectar"),
        ({"can_follow_up": False}, Message.Purpose.FOLLOW_UP, "follow-up"),
        ({"daily_cap": 0}, Message.Purpose.CAMPAIGN, "Limite diário"),
    ],
)
def test_chip_permissions_and_cap_hold_proactive_messages_but_not_replies(
    fake_provider, provider_chip, chip_kwargs, purpose, reason
):
    chip = provider_chip(**chip_kwargs)
    (held,) = queue(chip, purpose=purpose)
    (reply,) = queue(chip, purpose=Message.Purpose.REPLY)

    outbox.outbox_drain()

    held.refresh_from_db()
    reply.refresh_from_db()
    assert reply.status == Message.Status.SENT
    assert held.status == Message.Status.QUEUED
    assert reason in held.last_error
    assert held.next_attempt_at > timezone.now()
    assert fake_provider.count() == 1


def test_the_daily_cap_ramps_up_during_warm_up_and_counts_todays_sends(
    fake_provider, provider_chip
):
    today = timezone.localdate()
    chip = provider_chip(daily_cap=100, warmup_days=10, warmup_started_on=today)
    queue(chip, 12, purpose=Message.Purpose.CAMPAIGN)

    outbox.outbox_drain()

    # Day 1 of 10: 10% of 100.
    assert fake_provider.count() == 10
    held = Message.objects.filter(status=Message.Status.QUEUED)
    assert held.count() == 2
    assert all("Limite diário do chip atingido (10)" in m.last_error for m in held)


def test_outside_the_send_window_campaigns_wait_for_it_to_open(fake_provider, provider_chip):
    now_local = timezone.localtime()
    start = (now_local + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    end = (now_local + timedelta(hours=3)).time().replace(second=0, microsecond=0)
    chip = provider_chip(
        send_window_start=start, send_window_end=end, time_zone="America/Sao_Paulo"
    )
    (message,) = queue(chip, purpose=Message.Purpose.CAMPAIGN)

    outbox.outbox_drain()

    message.refresh_from_db()
    assert fake_provider.count() == 0
    assert "Fora da janela" in message.last_error
    opens = timezone.localtime(message.next_attempt_at)
    assert opens.time().replace(second=0) == start
    assert opens > timezone.now()


def test_an_expired_lease_returns_the_message_to_the_queue(fake_provider, provider_chip):
    chip = provider_chip()
    (message,) = queue(chip)
    claim = outbox.outbox_claim_next()
    assert claim.message_id == message.pk
    message.refresh_from_db()
    assert message.status == Message.Status.SENDING
    # The worker died here. Its lease runs out...
    Message.objects.filter(pk=message.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    Chip.objects.filter(pk=chip.pk).update(next_send_at=timezone.now() - timedelta(seconds=1))

    report = outbox.outbox_drain()

    assert report.recovered == 1
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.attempts == 2
    # A late answer from the dead worker's attempt changes nothing.
    outbox.outbox_record_result(
        claim=claim,
        result=outbox.SendResult.sent("late"),
        started_at=timezone.now(),
        duration_ms=1,
    )
    message.refresh_from_db()
    assert message.provider_message_id != "late"


def test_send_window_overnight_and_closed_messages_for_replies(provider_chip):
    from channels import pacing

    chip = provider_chip(send_window_start=time(20, 0), send_window_end=time(2, 0))
    tz = pacing.chip_zone(chip)
    late = timezone.datetime(2026, 3, 2, 23, 0, tzinfo=tz)
    morning = timezone.datetime(2026, 3, 2, 9, 0, tzinfo=tz)
    assert pacing.chip_window_opens_at(chip, now=late) is None
    assert pacing.chip_window_opens_at(chip, now=morning) == timezone.datetime(
        2026, 3, 2, 20, 0, tzinfo=tz
    )


def test_tasks_call_the_drain(fake_provider, provider_chip):
    queue(provider_chip(), 2)
    assert tasks.outbox_send_now() == {
        "attempts": 2,
        "sent": 2,
        "failed": 0,
        "retried": 0,
        "recovered": 0,
    }
    assert tasks.outbox_sweep(max_seconds=0)["attempts"] == 0


def test_metrics_endpoint_exports_the_outbox_counters(fake_provider, provider_chip, client):
    fake_provider.script(OK, SERVER_ERROR)
    queue(provider_chip(), 2)
    outbox.outbox_drain()

    text = client.get("/metrics").content.decode()

    assert 'outbound_messages_total{outcome="sent"} 1.0' in text
    assert 'outbound_messages_total{outcome="retry"} 1.0' in text
    assert (
        'integration_requests_total{integration="evolution",operation="send_text",outcome="ok"} 1.0'
        in text
    )
    assert "outbox_pending_messages 1.0" in text


def test_a_media_message_leaves_through_the_providers_media_endpoint(fake_provider, provider_chip):
    (message,) = queue(
        provider_chip(),
        kind=Message.Kind.IMAGE,
        media_url="https://cdn.example.com/catalogo.jpg",
        body="Nosso catálogo",
    )

    outbox.outbox_drain()

    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    (request,) = fake_provider.seen()
    assert request.path.startswith("/message/sendMedia/")
    assert request.body["media"] == "https://cdn.example.com/catalogo.jpg"
    assert request.body["caption"] == "Nosso catálogo"


def test_a_reply_on_one_chip_goes_before_campaigns_waiting_on_others(fake_provider, provider_chip):
    busy = provider_chip()
    queue(busy, 3, purpose=Message.Purpose.CAMPAIGN, priority=0)
    quiet = provider_chip()
    Chip.objects.filter(pk=quiet.pk).update(next_send_at=timezone.now() - timedelta(seconds=5))
    (reply,) = queue(quiet, purpose=Message.Purpose.REPLY, priority=100)

    claim = outbox.outbox_claim_next()

    assert claim.message_id == reply.pk


def test_the_periodic_sweep_is_scheduled_every_30_seconds():
    from django_q.models import Schedule

    from core.schedules import ensure_schedules

    ensure_schedules()
    sweeps = Schedule.objects.filter(func="conversations.tasks.outbox_sweep")
    assert sweeps.count() == 2
    assert {s.minutes for s in sweeps} == {1}
    first, second = sorted(s.next_run for s in sweeps)
    assert (second - first).total_seconds() == 30


def test_a_drain_waits_for_a_dead_workers_lease_and_sends_the_message(
    fake_provider, provider_chip, settings
):
    settings.OUTBOX_LEASE_SECONDS = 1
    (message,) = queue(provider_chip())
    assert outbox.outbox_claim_next().message_id == message.pk  # and its worker dies

    report = outbox.outbox_drain(max_seconds=5)

    assert report.recovered == 1
    assert report.sent == 1
    message.refresh_from_db()
    assert message.status == Message.Status.SENT


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_send_frees_its_message_and_chip_at_once(fake_provider, provider_chip):
    from tests.support.processes import BASE_DIR, test_database_url

    chip = provider_chip()
    (message,) = queue(chip)
    # A real worker process claims the message and dies before recording the send.
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "import os; from conversations.outbox import outbox_claim_next; "
            "assert outbox_claim_next(); os._exit(0)",
        ],
        cwd=BASE_DIR,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "TEST_DATABASE_URL": test_database_url(),
        },
        check=True,
    )
    message.refresh_from_db()
    assert message.status == Message.Status.SENDING
    assert message.lease_expires_at > timezone.now() + timedelta(seconds=30)

    report = outbox.outbox_drain()

    assert report.recovered == 1
    assert report.sent == 1
    message.refresh_from_db()
    assert message.status == Message.Status.SENT


def test_a_live_workers_lease_is_left_alone_until_it_expires(fake_provider, provider_chip):
    (message,) = queue(provider_chip())
    assert outbox.outbox_claim_next().message_id == message.pk  # this process: alive

    report = outbox.outbox_drain()

    assert report.recovered == 0
    message.refresh_from_db()
    assert message.status == Message.Status.SENDING
    assert fake_provider.count() == 0
