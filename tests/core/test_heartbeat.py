from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.models import Schedule

from core.models import WorkerHeartbeat
from core.schedules import PERIODIC_TASKS, ensure_schedules
from core.tasks import heartbeat
from tests.factories.core import WorkerHeartbeatFactory

pytestmark = pytest.mark.django_db


def test_heartbeat_task_records_and_advances_the_beat():
    heartbeat()
    first = WorkerHeartbeat.objects.get()
    assert first.beats == 1
    assert first.pid

    heartbeat()
    second = WorkerHeartbeat.objects.get()
    assert second.beats == 2
    assert second.beat_at >= first.beat_at


@pytest.mark.parametrize("agent", [False, True])
def test_migrate_registers_two_heartbeat_schedules_thirty_seconds_apart_per_cluster(
    agent, settings
):
    # None: the default cluster's scheduler; the agent's cluster runs its own.
    cluster = settings.Q_AGENT_CLUSTER if agent else None
    beats = Schedule.objects.filter(func="core.tasks.heartbeat", cluster=cluster).order_by(
        "next_run"
    )
    assert beats.count() == 2
    first, second = beats
    assert (second.next_run - first.next_run).total_seconds() % 60 == 30
    assert {s.minutes for s in beats} == {1}


def test_the_stuck_recovery_runs_on_the_agents_cluster(settings):
    # Its turns call the model: never on the cluster that must stay fast.
    recovery = Schedule.objects.get(func="agent.tasks.recover_stuck")
    assert recovery.cluster == settings.Q_AGENT_CLUSTER


def test_ensure_schedules_is_idempotent_and_removes_retired_tasks():
    Schedule.objects.create(
        name="retired", func="core.tasks.gone", schedule_type=Schedule.MINUTES, minutes=5
    )
    Schedule.objects.create(
        name="somebody else's", func="thirdparty.tasks.x", schedule_type=Schedule.HOURLY
    )

    ensure_schedules()
    ensure_schedules()

    names = set(Schedule.objects.values_list("name", flat=True))
    assert {task.name for task in PERIODIC_TASKS} <= names
    assert "retired" not in names
    assert "somebody else's" in names
    assert Schedule.objects.filter(name="heartbeat").count() == 1


def test_worker_alive_command(settings):
    settings.HEARTBEAT_STALE_SECONDS = 120
    with pytest.raises(CommandError, match="no worker heartbeat"):
        call_command("worker_alive")

    WorkerHeartbeatFactory(beat_at=timezone.now() - timedelta(minutes=5))
    with pytest.raises(CommandError, match="old"):
        call_command("worker_alive")

    heartbeat()
    call_command("worker_alive")

    # The agent's container checks its own cluster (or --cluster names one).
    with pytest.raises(CommandError, match="no worker heartbeat recorded for sdr-agent"):
        call_command("worker_alive", cluster=settings.Q_AGENT_CLUSTER)
    WorkerHeartbeatFactory(cluster=settings.Q_AGENT_CLUSTER)
    call_command("worker_alive", cluster=settings.Q_AGENT_CLUSTER)
