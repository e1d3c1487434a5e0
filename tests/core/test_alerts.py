"""Alert rules and their lifecycle: open once, stay one, resolve, tell Slack each time."""

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
import respx
import time_machine
from django.contrib.admin import helpers
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from agent.models import AgentRun
from channels.models import Chip
from conversations.models import Message
from core import tasks
from core.alerts import alerts_evaluate
from core.models import Alert, AuditEntry, WorkerHeartbeat
from tests.factories import agent as agent_f
from tests.factories import channels as channel_f
from tests.factories import conversations as conv_f
from tests.factories import core as core_f

SLACK = "https://hooks.slack.example/services/T000/B000/XXXX"
SP = ZoneInfo("America/Sao_Paulo")


@pytest.fixture
def slack(settings):
    settings.SLACK_WEBHOOK_URL = SLACK
    with respx.mock(assert_all_called=False) as router:
        route = router.post(SLACK).mock(return_value=httpx.Response(200, text="ok"))
        yield route


def slack_texts(route) -> list[str]:
    return [json.loads(call.request.content)["text"] for call in route.calls]


def evaluate(capture, **kwargs):
    with capture(execute=True):
        return alerts_evaluate(**kwargs)


def queued_backlog(count: int, *, waited_minutes: int) -> None:
    chip = channel_f.ChipFactory()
    conv_f.OutboundMessageFactory.create_batch(count, conversation__chip=chip)
    Message.objects.filter(status="queued", chip=chip).update(
        next_attempt_at=timezone.now() - timedelta(minutes=waited_minutes)
    )


def active() -> set[tuple[str, str]]:
    return set(Alert.objects.filter(status__in=Alert.ACTIVE).values_list("condition", "subject"))


@pytest.mark.django_db
def test_the_incident_opens_the_right_alerts_once_and_resolves_them_when_the_worker_runs(
    slack, django_capture_on_commit_callbacks, settings
):
    # The seeds' incident: the worker never ran, the queue piled up for hours
    # (the agent's cluster is up: its own alert has its own test).
    core_f.WorkerHeartbeatFactory(beat_at=timezone.now() - timedelta(hours=3))
    core_f.WorkerHeartbeatFactory(cluster=settings.Q_AGENT_CLUSTER)
    queued_backlog(51, waited_minutes=45)

    first = evaluate(django_capture_on_commit_callbacks)

    assert active() == {("outbox_backlog", ""), ("worker_down", "")}
    assert len(first.opened) == 2
    texts = slack_texts(slack)
    assert len(texts) == 2
    assert any("Fila de envio com 51 mensagens" in t for t in texts)
    assert any("Worker parado" in t for t in texts)

    for _ in range(3):
        again = evaluate(django_capture_on_commit_callbacks)
        assert again.opened == []
        assert again.still_active == 2
    assert Alert.objects.count() == 2
    assert len(slack.calls) == 2

    # The worker runs again and drains the queue.
    core_f.WorkerHeartbeatFactory(beat_at=timezone.now())
    from core.models import WorkerHeartbeat

    WorkerHeartbeat.objects.update(beat_at=timezone.now())
    Message.objects.filter(status="queued").update(
        status="sent", outcome="sent", sent_at=timezone.now()
    )
    last = evaluate(django_capture_on_commit_callbacks)

    assert len(last.resolved) == 2
    assert active() == set()
    assert set(Alert.objects.values_list("status", flat=True)) == {"resolved"}
    resolves = slack_texts(slack)[2:]
    assert len(resolves) == 2
    assert all(t.startswith(":white_check_mark:") for t in resolves)


@pytest.mark.django_db
def test_a_small_or_young_backlog_is_no_alert(slack, django_capture_on_commit_callbacks):
    core_f.WorkerHeartbeatFactory()
    queued_backlog(50, waited_minutes=45)
    evaluate(django_capture_on_commit_callbacks, conditions=["outbox_backlog"])
    assert active() == set()  # 50 is not over 50

    queued_backlog(1, waited_minutes=0)
    evaluate(django_capture_on_commit_callbacks, conditions=["outbox_backlog"])
    assert ("outbox_backlog", "") in active()  # 51, the oldest waiting 45 min

    Message.objects.filter(status="queued").update(next_attempt_at=timezone.now())
    evaluate(django_capture_on_commit_callbacks, conditions=["outbox_backlog"])
    assert active() == set()  # 51, but none waited 30 min


@pytest.mark.django_db
def test_each_chip_down_is_its_own_alert(slack, django_capture_on_commit_callbacks):
    restricted = channel_f.ChipFactory(name="SP 1", status=Chip.Status.RESTRICTED)
    open_circuit = channel_f.ChipFactory(name="SP 2", circuit_state=Chip.CircuitState.OPEN)
    channel_f.ChipFactory(name="SP 3")

    evaluate(django_capture_on_commit_callbacks, conditions=["chip_down"])
    assert active() == {
        ("chip_down", f"chip:{restricted.pk}"),
        ("chip_down", f"chip:{open_circuit.pk}"),
    }

    Chip.objects.filter(pk=restricted.pk).update(status=Chip.Status.CONNECTED)
    report = evaluate(django_capture_on_commit_callbacks, conditions=["chip_down"])

    assert [a.subject for a in report.resolved] == [f"chip:{restricted.pk}"]
    assert active() == {("chip_down", f"chip:{open_circuit.pk}")}
    assert "Resolvido: Chip SP 1" in slack_texts(slack)[-1]


def _outbound_decided(n: int, *, failed: int) -> None:
    chip = channel_f.ChipFactory()
    now = timezone.now()
    for i in range(n):
        bad = i < failed
        conv_f.OutboundMessageFactory(
            conversation__chip=chip,
            status="failed" if bad else "sent",
            outcome="failed_provider" if bad else "sent",
            failed_at=now if bad else None,
            sent_at=None if bad else now,
        )


@pytest.mark.django_db
def test_send_error_rate_over_ten_percent_in_fifteen_minutes(
    slack, django_capture_on_commit_callbacks
):
    _outbound_decided(10, failed=1)  # 10%: not over
    evaluate(django_capture_on_commit_callbacks, conditions=["error_rate"])
    assert active() == set()

    _outbound_decided(10, failed=4)  # 5 of 20: 25%
    evaluate(django_capture_on_commit_callbacks, conditions=["error_rate"])
    (alert,) = Alert.objects.filter(status="open")
    assert alert.subject == "envios"
    assert alert.value == pytest.approx(0.25)


@pytest.mark.django_db
def test_agent_error_rate_is_its_own_subject(slack, django_capture_on_commit_callbacks):
    conversation = conv_f.ConversationFactory()
    agent_f.AgentRunFactory.create_batch(8, conversation=conversation)
    agent_f.AgentRunFactory.create_batch(
        3, conversation=conversation, outcome=AgentRun.Outcome.ERROR
    )

    evaluate(django_capture_on_commit_callbacks, conditions=["error_rate"])

    assert active() == {("error_rate", "agente")}


@pytest.mark.django_db
def test_no_responses_for_thirty_minutes_only_in_business_hours(
    slack, django_capture_on_commit_callbacks
):
    wednesday_10h = datetime(2026, 11, 18, 10, 0, tzinfo=SP)
    sunday_10h = datetime(2026, 11, 22, 10, 0, tzinfo=SP)
    inbound = conv_f.InboundMessageFactory()

    for now, fires in [(sunday_10h, False), (wednesday_10h, True)]:
        Message.objects.filter(pk=inbound.pk).update(created_at=now - timedelta(minutes=10))
        evaluate(django_capture_on_commit_callbacks, conditions=["no_responses"], now=now)
        assert (("no_responses", "") in active()) is fires

    reply = conv_f.OutboundMessageFactory(conversation=inbound.conversation, reply_to=inbound)
    Message.objects.filter(pk=reply.pk).update(created_at=wednesday_10h - timedelta(minutes=1))
    evaluate(django_capture_on_commit_callbacks, conditions=["no_responses"], now=wednesday_10h)
    assert active() == set()


@pytest.mark.django_db
def test_handoff_rate_over_twenty_percent(slack, django_capture_on_commit_callbacks):
    conversations = [conv_f.InboundMessageFactory().conversation for _ in range(10)]
    conv_f.HandoffFactory(conversation=conversations[0])
    conv_f.HandoffFactory(conversation=conversations[1])
    evaluate(django_capture_on_commit_callbacks, conditions=["handoff_rate"])
    assert active() == set()  # 20% is not over 20%

    conv_f.HandoffFactory(conversation=conversations[2])
    evaluate(django_capture_on_commit_callbacks, conditions=["handoff_rate"])
    assert active() == {("handoff_rate", "")}


@pytest.mark.django_db
def test_agent_p95_over_its_threshold(slack, settings, django_capture_on_commit_callbacks):
    settings.ALERT_AGENT_P95_SECONDS = 10
    now = timezone.now()
    for seconds in [2, 2, 3, 3, 4, 30]:
        inbound = conv_f.InboundMessageFactory()
        reply = conv_f.OutboundMessageFactory(conversation=inbound.conversation, reply_to=inbound)
        Message.objects.filter(pk=inbound.pk).update(created_at=now - timedelta(seconds=seconds))
        Message.objects.filter(pk=reply.pk).update(created_at=now)

    evaluate(django_capture_on_commit_callbacks, conditions=["agent_slow"])

    (alert,) = Alert.objects.all()
    assert alert.condition == "agent_slow"
    assert alert.value == pytest.approx(30, abs=1)


@pytest.mark.django_db
def test_the_periodic_task_evaluates_every_rule(django_capture_on_commit_callbacks, settings):
    channel_f.ChipFactory(status=Chip.Status.DISCONNECTED)
    # An installation running for a while (its default cluster first beat an
    # hour ago), whose agent cluster never beat.
    core_f.WorkerHeartbeatFactory(
        beat_at=timezone.now() - timedelta(hours=1),
        first_beat_at=timezone.now() - timedelta(hours=1),
    )
    with django_capture_on_commit_callbacks(execute=True):
        summary = tasks.alerts_evaluate()
    # No heartbeat of the agent's cluster + the disconnected chip. The default
    # cluster, which runs this task, is alive by definition: it beats first
    # (CI saw its first evaluation run before its first heartbeat task).
    assert summary.startswith("2 aberto(s)")
    assert active() == {
        ("worker_down", f"cluster:{settings.Q_AGENT_CLUSTER}"),
        ("chip_down", f"chip:{Chip.objects.get().pk}"),
    }
    assert WorkerHeartbeat.objects.filter(cluster=settings.Q_CLUSTER["name"]).exists()


@pytest.mark.django_db
def test_a_new_installation_gives_the_agent_cluster_time_to_beat_first(
    slack, django_capture_on_commit_callbacks, settings
):
    # The very first start: the default cluster evaluates the rules before the
    # agent's scheduler has run its first heartbeat (about 30 s after it starts).
    with time_machine.travel(timezone.now(), tick=False) as clock:
        with django_capture_on_commit_callbacks(execute=True):
            tasks.alerts_evaluate()
        assert active() == set()

        # Still no beat of the agent's cluster once a running cluster would be stale.
        clock.shift(timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS + 1))
        with django_capture_on_commit_callbacks(execute=True):
            tasks.alerts_evaluate()
        assert active() == {("worker_down", f"cluster:{settings.Q_AGENT_CLUSTER}")}
        [text] = slack_texts(slack)
        assert "o qcluster do agente nunca rodou" in text


@pytest.mark.django_db
def test_health_notices_a_dead_worker_throttled(
    client, slack, django_capture_on_commit_callbacks, settings
):
    cache.clear()
    core_f.WorkerHeartbeatFactory(beat_at=timezone.now() - timedelta(minutes=5))
    core_f.WorkerHeartbeatFactory(cluster=settings.Q_AGENT_CLUSTER)

    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            assert client.get("/health").status_code == 200

    assert active() == {("worker_down", "")}
    assert len(slack.calls) == 1
    cache.clear()


@pytest.mark.django_db
def test_a_dead_agent_cluster_is_an_alert_of_its_own(
    slack, django_capture_on_commit_callbacks, settings
):
    core_f.WorkerHeartbeatFactory()
    core_f.WorkerHeartbeatFactory(
        cluster=settings.Q_AGENT_CLUSTER, beat_at=timezone.now() - timedelta(minutes=5)
    )

    evaluate(django_capture_on_commit_callbacks, conditions=["worker_down"])

    assert active() == {("worker_down", f"cluster:{settings.Q_AGENT_CLUSTER}")}
    [text] = slack_texts(slack)
    assert "Cluster do agente parado" in text


def _post_action(client, action: str, alerts: list[Alert]):
    return client.post(
        reverse("admin:core_alert_changelist"),
        {"action": action, helpers.ACTION_CHECKBOX_NAME: [a.pk for a in alerts]},
        follow=True,
    )


@pytest.mark.django_db
def test_ops_acknowledge_and_resolve_alerts_with_an_audit_entry(
    client, django_user_model, slack, django_capture_on_commit_callbacks
):
    ops = django_user_model.objects.create_user("ana", password="x", is_staff=True)
    ops.groups.add(Group.objects.get(name="ops"))
    client.force_login(ops)
    alert = core_f.AlertFactory(title="Chip SP 1: restrito")

    _post_action(client, "acknowledge", [alert])
    alert.refresh_from_db()
    assert alert.status == "acknowledged"
    assert alert.acknowledged_by == ops

    with django_capture_on_commit_callbacks(execute=True):
        _post_action(client, "resolve", [alert])
    alert.refresh_from_db()
    assert alert.status == "resolved"
    assert alert.resolved_by == ops
    assert slack_texts(slack) == [":white_check_mark: *Resolvido por ana: Chip SP 1: restrito*"]
    entries = list(
        AuditEntry.objects.order_by("at").values_list("action", "actor_label", "object_count")
    )
    assert entries == [("alert_acknowledge", "ana", 1), ("alert_resolve", "ana", 1)]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["manager", "sdr"])
def test_other_roles_cannot_acknowledge_or_resolve(client, django_user_model, role):
    user = django_user_model.objects.create_user(f"u-{role}", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    alert = core_f.AlertFactory()

    for action in ["acknowledge", "resolve"]:
        response = _post_action(client, action, [alert])
        assert response.status_code in (200, 403)

    alert.refresh_from_db()
    assert alert.status == "open"
    assert not AuditEntry.objects.exists()
