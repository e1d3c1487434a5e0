"""A real `manage.py qcluster` runs our tasks and its scheduler beats.

The seeds' incident: a worker service that started without errors and never
ran anything. This test fails if the cluster cannot start, cannot reach the
database, cannot import our tasks, or its scheduler never fires.
"""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule, Task
from django_q.tasks import async_task

from core.models import WorkerHeartbeat
from core.schedules import ensure_schedules
from tests.support.processes import running_qcluster, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_cluster_runs_enqueued_task_and_scheduled_heartbeat(client):
    ensure_schedules()
    # Make both heartbeat schedules due, so the scheduler's first pass runs them.
    due = timezone.now() - timedelta(seconds=1)
    Schedule.objects.filter(func="core.tasks.heartbeat").update(next_run=due)
    assert not WorkerHeartbeat.objects.exists()

    with running_qcluster() as cluster:
        task_id = async_task("core.tasks.heartbeat")
        task = wait_for(
            lambda: Task.objects.filter(id=task_id).first(), timeout=30, what="enqueued task"
        )
        assert task.success, task.result
        first = WorkerHeartbeat.objects.get(cluster="sdr")
        assert first.beats >= 1

        # Nothing else is enqueued by the test: only the cluster's scheduler
        # (about every 30 s) can advance the heartbeat now.
        wait_for(
            lambda: WorkerHeartbeat.objects.get(cluster="sdr").beats > first.beats,
            timeout=75,
            what="a scheduled heartbeat",
        )
        # The agent's cluster runs its own heartbeat schedules: it beats for
        # itself. It starts after the default one and, on a loaded machine,
        # its scheduler's first pass can come later than the default's.
        wait_for(
            lambda: WorkerHeartbeat.objects.filter(cluster="sdr-agent", beats__gte=1).exists(),
            timeout=75,
            what="the agent cluster's scheduled heartbeat",
        )
        assert cluster.poll() is None, "the cluster died"

    beat = WorkerHeartbeat.objects.get(cluster="sdr")
    assert beat.beat_at > first.beat_at
    # Each schedule ran and moved on to its next run (not stuck firing at the
    # same due time); on a loaded machine the next one may already be due.
    schedules = Schedule.objects.filter(func="core.tasks.heartbeat")
    assert schedules.count() == 4
    assert all(schedule.next_run > due for schedule in schedules)

    call_command("worker_alive")
    call_command("worker_alive", cluster="sdr-agent")
    health = client.get("/health").json()
    assert health["checks"]["worker"]["status"] == "ok"
    assert health["checks"]["agent_worker"]["status"] == "ok"
