"""The stuck-bot plan: the lead's answer was saved, processing died, the bot never advanced.

Daniella answered "1" at `convidados`; the webhook stored her message and
then the worker was killed before the agent ran (here: the agent's task is
taken off the queue and never run). The recovery task must advance the flow
once, and never again for the same message.
"""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from agent import tasks
from agent.models import AgentRun, ConversationLease
from agent.turns import agent_enqueue
from channels import tasks as channel_tasks
from conversations.models import Conversation, Message
from core.models import AuditEntry, WorkerHeartbeat
from core.schedules import ensure_schedules
from core.services import heartbeat_record
from tests.channels.webhooks import post_webhook
from tests.factories.conversations import ConversationFactory, OutboundMessageFactory

pytestmark = pytest.mark.django_db

ASKED_GUESTS = "Quantos convidados, mais ou menos?"


@pytest.fixture
def stuck(client, sandbox_chip, flow_profile, django_capture_on_commit_callbacks):
    """A conversation left exactly the way the plan describes, `minutes` ago."""

    def make(*, minutes: float = 5, text: str = "1", **conversation_fields):
        sandbox_chip.agent_profile = flow_profile
        sandbox_chip.save()
        conversation = ConversationFactory(
            chip=sandbox_chip,
            lead__phone="+5511987650001",
            lead__name="Daniella Harumi",
            flow_step="convidados",
            flow_data={"nome": "Daniella Harumi", "tipo": "Casamento", "mes": 3, "dia": 15},
            **conversation_fields,
        )
        OutboundMessageFactory(conversation=conversation, body=ASKED_GUESTS, status="sent")
        payload = {"type": "message", "id": f"sbx-{minutes}", "from": "+5511987650001"}
        with django_capture_on_commit_callbacks(execute=True):
            event_id = post_webhook(client, sandbox_chip, {**payload, "text": text}).json()[
                "event_id"
            ]
        with django_capture_on_commit_callbacks(execute=True):
            channel_tasks.process_webhook_event(event_id)
        # The worker died: the agent's task never ran.
        queued = [q.task["func"] for q in OrmQ.objects.all()]
        if conversation.controlled_by == "agent" and not conversation.agent_paused:
            assert "agent.tasks.answer_message" in queued
        OrmQ.objects.all().delete()
        at = timezone.now() - timedelta(minutes=minutes)
        message = Message.objects.get(conversation=conversation, direction="in")
        Message.objects.filter(pk=message.pk).update(created_at=at)
        Message.objects.filter(conversation=conversation, direction="out").update(
            created_at=at - timedelta(minutes=1)
        )
        Conversation.objects.filter(pk=conversation.pk).update(last_inbound_at=at)
        conversation.refresh_from_db()
        assert message.status == Message.Status.RECEIVED
        return conversation, message

    return make


def bot_messages(conversation):
    return list(
        Message.objects.filter(conversation=conversation, direction="out")
        .order_by("created_at")
        .values_list("body", flat=True)
    )


def test_recovery_advances_the_stuck_flow_once(stuck):
    conversation, message = stuck(minutes=5)

    assert tasks.recover_stuck() == {"handoff": 1}

    conversation.refresh_from_db()
    assert conversation.flow_data["convidados"] == 1
    assert conversation.flow_step == "__done__"
    assert bot_messages(conversation) == [
        ASKED_GUESTS,
        "Perfeito! Vou passar para a nossa especialista. 😉",
    ]
    run = AgentRun.objects.get()
    assert (run.trigger, run.message_id, run.kind) == ("recovery", message.pk, "flow")
    message.refresh_from_db()
    assert message.status == Message.Status.PROCESSED

    # Nothing left to recover: the next runs do nothing.
    assert tasks.recover_stuck() == {}
    assert tasks.recover_stuck() == {}
    assert AgentRun.objects.count() == 1
    # One audit entry, for the run that changed something.
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.source, entry.object_ids) == (
        "recover_stuck",
        "task",
        [str(message.pk)],
    )


def test_an_invalid_stuck_answer_gets_the_error_and_the_question_again(stuck):
    conversation, _ = stuck(minutes=3, text="não sei ainda")

    tasks.recover_stuck()

    conversation.refresh_from_db()
    assert conversation.flow_step == "convidados"
    assert bot_messages(conversation)[-1] == (
        f"Não entendi o número. Pode mandar só o número, por favor?\n\n{ASKED_GUESTS}"
    )


def test_a_message_is_recovered_at_most_once_even_if_the_recovery_died(stuck):
    conversation, message = stuck(minutes=6)
    # A recovery that was killed in turn left its run behind and sent nothing.
    AgentRun.objects.create(
        conversation=conversation, message=message, kind="flow", trigger="recovery"
    )

    assert tasks.recover_stuck() == {}
    assert bot_messages(conversation) == [ASKED_GUESTS]


@pytest.fixture
def agent_line(settings):
    """The agent's cluster is alive and turns wait in its queue (a flood being worked through)."""

    def line(message):
        heartbeat_record(cluster=settings.Q_AGENT_CLUSTER)
        agent_enqueue(message.pk)  # its own task, back in line
        assert OrmQ.objects.filter(key=settings.Q_AGENT_CLUSTER).count() == 1

    return line


def test_a_message_waiting_in_the_agents_line_is_left_to_its_task(stuck, agent_line):
    conversation, message = stuck(minutes=5)
    agent_line(message)

    assert tasks.recover_stuck() == {}
    assert bot_messages(conversation) == [ASKED_GUESTS]

    # Its task reaches a worker: answered once, by the normal path.
    (queued,) = OrmQ.objects.all()
    assert tasks.answer_message(*queued.task["args"]) == "handoff"
    assert len(bot_messages(conversation)) == 2
    assert AgentRun.objects.get().trigger == AgentRun.Trigger.INBOUND
    assert tasks.recover_stuck() == {}


def _agent_down(settings, conversation, message):
    WorkerHeartbeat.objects.filter(cluster=settings.Q_AGENT_CLUSTER).update(
        beat_at=timezone.now() - timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS + 1)
    )


def _turn_ran_and_failed(settings, conversation, message):
    AgentRun.objects.create(conversation=conversation, message=message, kind="flow")


def _worker_died_holding_it(settings, conversation, message):
    ConversationLease.objects.create(
        conversation=conversation, token="dead", expires_at=timezone.now() - timedelta(seconds=1)
    )


@pytest.mark.parametrize(
    ("minutes", "after"),
    [
        (11, None),  # older than AGENT_TASK_LOST_SECONDS: its task was dropped
        (5, _agent_down),  # a queue nobody drains is not a line
        (5, _turn_ran_and_failed),
        (5, _worker_died_holding_it),
    ],
)
def test_a_line_does_not_spare_what_is_really_lost(stuck, agent_line, settings, minutes, after):
    conversation, message = stuck(minutes=minutes)
    agent_line(message)
    if after:
        after(settings, conversation, message)

    assert tasks.recover_stuck() == {"handoff": 1}
    assert bot_messages(conversation)[-1] == "Perfeito! Vou passar para a nossa especialista. 😉"


@pytest.mark.parametrize(
    ("minutes", "fields"),
    [
        (1, {}),  # normal processing may still be running
        (45, {}),  # too old: the lead has moved on
        (5, {"controlled_by": "human"}),
        (5, {"agent_paused": True}),
    ],
)
def test_recovery_leaves_alone_what_is_not_stuck(stuck, minutes, fields):
    conversation, _ = stuck(minutes=minutes, **fields)

    assert tasks.recover_stuck() == {}
    assert bot_messages(conversation) == [ASKED_GUESTS]


def test_recover_stuck_command_dry_run_then_for_real(stuck, capsys):
    conversation, message = stuck(minutes=4)

    call_command("recover_stuck", "--dry-run")
    out = capsys.readouterr().out
    assert f"conversation {conversation.pk} (+5511987650001) message {message.pk}" in out
    assert "step=convidados: stuck" in out
    assert "1 stuck conversation(s)" in out
    assert bot_messages(conversation) == [ASKED_GUESTS]

    assert not AuditEntry.objects.exists()  # a dry run changes nothing
    call_command("recover_stuck")
    assert "1 stuck conversation(s): {'handoff': 1}" in capsys.readouterr().out
    entry = AuditEntry.objects.get()
    assert (entry.source, entry.object_count, entry.detail) == ("command", 1, {"handoff": 1})
    call_command("recover_stuck")
    assert "0 stuck conversation(s)" in capsys.readouterr().out
    assert len(bot_messages(conversation)) == 2


def test_recovery_runs_every_minute():
    ensure_schedules()
    schedule = Schedule.objects.get(func="agent.tasks.recover_stuck")
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == ("I", 1, -1)
