"""The first start of `make run`, as a new user sees it.

`make run` loads the demo data and starts the worker. The demo leads used to
wait, unanswered, for the stuck-conversation recovery, whose WARNING lines
read like a failure; and the idle worker printed about 18 django-q lines a
minute (every periodic task enqueued, started and finished at INFO).
"""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from agent.models import AgentRun
from conversations.models import Conversation, Message
from core.models import WorkerHeartbeat
from core.schedules import ensure_schedules
from tests.support.processes import process_output, running_qcluster, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def _answered_conversations() -> int:
    return (
        Conversation.objects.filter(agent_runs__trigger=AgentRun.Trigger.INBOUND).distinct().count()
    )


def test_first_start_answers_the_demo_leads_then_the_idle_worker_logs_nothing():
    call_command("seed_demo", stdout=io.StringIO())
    assert not Message.objects.filter(direction=Message.Direction.OUTBOUND).exists()
    ensure_schedules()
    # Every periodic task due at once: the scheduler's first pass runs them all.
    due = timezone.now() - timedelta(seconds=1)
    Schedule.objects.update(next_run=due)

    with running_qcluster(env={"LOG_LEVEL": "INFO"}) as cluster:
        # The worker answers the demo leads as soon as it runs, the way it
        # answers a webhook's message, not the recovery minutes later.
        wait_for(
            lambda: _answered_conversations() == Conversation.objects.count(),
            timeout=60,
            what="the agent to answer every demo conversation",
        )
        wait_for(
            lambda: (
                not Schedule.objects.filter(next_run__lte=due).exists()
                and WorkerHeartbeat.objects.exists()
            ),
            timeout=90,
            what="every periodic task to run once",
        )
        assert cluster.poll() is None, "the cluster died"
        log = process_output(cluster)

    assert not AgentRun.objects.filter(trigger=AgentRun.Trigger.RECOVERY).exists()
    assert Message.objects.filter(direction=Message.Direction.OUTBOUND).exists()
    lines = [line for line in log.splitlines() if line.strip()]
    # Only the cluster's own start lines; not one line per task, no warning.
    chatter = [
        line
        for line in lines
        if not ("INFO django-q" in line and ("Q Cluster" in line or "guarding cluster" in line))
    ]
    assert chatter == [], log
    assert len(lines) <= 4, log
