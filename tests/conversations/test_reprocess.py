"""Reprocessing (the runbook's options 2 to 4): admin actions, `reprocess_failed`, never twice."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from agent.models import AgentRun
from agent.reprocess import reprocess_message
from conversations.models import Conversation, Message
from core.models import AuditEntry
from tests.agent.conftest import agent_settings, run_tasks  # noqa: F401 - fixtures
from tests.factories.agent import AgentProfileFactory
from tests.factories.channels import ChipFactory
from tests.factories.conversations import (
    ConversationFactory,
    InboundMessageFactory,
    OutboundMessageFactory,
)

pytestmark = pytest.mark.django_db

MESSAGES = reverse("admin:conversations_message_changelist")
CONVERSATIONS = reverse("admin:conversations_conversation_changelist")


@pytest.fixture
def conversation():
    profile = AgentProfileFactory(
        fallback_reply="Já já alguém te responde!", handoff_on_failure=False
    )
    chip = ChipFactory(agent_profile=profile, min_interval_seconds=0, jitter_seconds=0)
    return ConversationFactory(chip=chip, lead__phone="+5511999999999")


def stored_unanswered(conversation, body="Qual formadora vocês recomendam?", minutes=10):
    """A lead message saved by the ingest whose answer never happened (the runbook's case 2)."""
    message = InboundMessageFactory(conversation=conversation, body=body)
    at = timezone.now() - timedelta(minutes=minutes)
    Message.objects.filter(pk=message.pk).update(created_at=at)
    Conversation.objects.filter(pk=conversation.pk).update(last_inbound_at=at, last_message_at=at)
    message.refresh_from_db()
    return message


def replies(conversation):
    outbound = Message.objects.filter(conversation=conversation, direction="out", purpose="reply")
    return list(outbound.order_by("pk"))


def test_reprocessing_twice_sends_one_reply(conversation):
    message = stored_unanswered(conversation)

    first = reprocess_message(message=message)
    second = reprocess_message(message=message)

    assert first.status == "fallback"  # no model configured: the fallback is the reply
    assert (second.status, second.detail) == ("already_answered", "Mensagem já respondida")
    [reply] = replies(conversation)
    assert reply.reply_to_id == message.pk
    assert AgentRun.objects.get().trigger == "reprocess"


@pytest.mark.parametrize("dead", [Message.Status.FAILED, Message.Status.CANCELLED])
def test_a_failed_or_cancelled_reply_does_not_count(conversation, dead):
    message = stored_unanswered(conversation)
    OutboundMessageFactory(conversation=conversation, reply_to=message, status=dead)

    assert reprocess_message(message=message).status == "fallback"

    assert [r.status for r in replies(conversation)] == [dead, "queued"]


def test_force_answers_again_for_ops(conversation):
    message = stored_unanswered(conversation)
    reprocess_message(message=message)

    assert reprocess_message(message=message, force=True).status == "fallback"
    assert len(replies(conversation)) == 2


def test_outbound_messages_are_not_reprocessed(conversation):
    sent = OutboundMessageFactory(conversation=conversation)
    assert reprocess_message(message=sent).status == "skipped"


@pytest.mark.usefixtures("run_tasks")
def test_admin_reprocess_action_twice_sends_one_reply(
    superuser_client, conversation, django_capture_on_commit_callbacks
):
    message = stored_unanswered(conversation)
    post = {"action": "reprocess_messages", "_selected_action": [message.pk]}

    with django_capture_on_commit_callbacks(execute=True):
        first = superuser_client.post(MESSAGES, post, follow=True)
    with django_capture_on_commit_callbacks(execute=True):
        second = superuser_client.post(MESSAGES, post, follow=True)

    assert "1 mensagem(ns) enviada(s) para o agente responder" in first.content.decode()
    assert "1 já respondida(s) (nenhuma resposta duplicada)" in second.content.decode()
    [reply] = replies(conversation)
    assert reply.reply_to_id == message.pk
    assert reply.status == Message.Status.SENT  # the sender ran after the agent


@pytest.mark.usefixtures("run_tasks")
def test_admin_reprocess_on_conversations_answers_the_last_lead_message(
    superuser_client, conversation, django_capture_on_commit_callbacks
):
    stored_unanswered(conversation, body="oi", minutes=12)
    last = stored_unanswered(conversation, body="tem horário sábado?", minutes=11)
    untouched = ConversationFactory(chip=conversation.chip)

    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(
            CONVERSATIONS,
            {
                "action": "reprocess_last_message",
                "_selected_action": [conversation.pk, untouched.pk],
            },
            follow=True,
        )

    assert "1 conversa(s) enviada(s) para o agente responder; 0 já respondida(s); 1 sem" in (
        response.content.decode()
    )
    [reply] = replies(conversation)
    assert reply.reply_to_id == last.pk


def test_reprocess_actions_need_the_permission(client, django_user_model, conversation):
    message = stored_unanswered(conversation)
    manager = django_user_model.objects.create_user("gerente", password="x", is_staff=True)
    manager.groups.add(Group.objects.get(name="manager"))
    ops = django_user_model.objects.create_user("ops", password="x", is_staff=True)
    ops.groups.add(Group.objects.get(name="ops"))

    client.force_login(manager)
    page = client.get(MESSAGES).content.decode()
    assert 'value="reprocess_messages"' not in page
    client.post(MESSAGES, {"action": "reprocess_messages", "_selected_action": [message.pk]})
    assert not AgentRun.objects.exists()

    client.force_login(ops)
    assert 'value="reprocess_messages"' in client.get(MESSAGES).content.decode()
    assert 'value="reprocess_last_message"' in client.get(CONVERSATIONS).content.decode()


def test_reprocess_failed_command(conversation, capsys):
    stuck = stored_unanswered(conversation, body="Qual o valor?", minutes=60)
    other_lead = ConversationFactory(chip=conversation.chip, lead__phone="+5521988887777")
    other = stored_unanswered(other_lead, body="oi", minutes=30)
    answered = ConversationFactory(chip=conversation.chip)
    done = stored_unanswered(answered, minutes=20)
    OutboundMessageFactory(conversation=answered, reply_to=done, status="sent")
    old = ConversationFactory(chip=conversation.chip)
    stored_unanswered(old, minutes=60 * 30)  # outside --since
    fresh = ConversationFactory(chip=conversation.chip)
    stored_unanswered(fresh, minutes=0)  # still being processed normally
    human = ConversationFactory(chip=conversation.chip, controlled_by="human")
    stored_unanswered(human, minutes=15)

    call_command("reprocess_failed", "--since", "24h", "--dry-run")
    out = capsys.readouterr().out
    assert f"message {stuck.pk} " in out
    assert f"message {other.pk} " in out
    assert "2 unanswered message(s) since 24h would be reprocessed" in out
    assert (
        not Message.objects.filter(direction="out", purpose="reply")
        .exclude(conversation=answered)
        .exists()
    )

    assert not AuditEntry.objects.exists()  # a dry run changes nothing
    call_command("reprocess_failed", "--since", "24h", "--phone", "(11) 99999-9999")
    out = capsys.readouterr().out
    assert "1 unanswered message(s) since 24h reprocessed: {'fallback': 1}" in out
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.source, entry.object_ids) == (
        "reprocess_failed",
        "command",
        [str(stuck.pk)],
    )
    assert entry.detail["phone"] == "+5511999999999"
    assert [r.reply_to_id for r in replies(conversation)] == [stuck.pk]
    assert replies(other_lead) == []

    call_command("reprocess_failed", "--since", "24h")
    call_command("reprocess_failed", "--since", "24h")
    assert "0 unanswered message(s)" in capsys.readouterr().out.splitlines()[-1]
    assert len(replies(conversation)) == 1
    assert len(replies(other_lead)) == 1


def test_reprocess_failed_refuses_a_bad_since():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--since"):
        call_command("reprocess_failed", "--since", "ontem")


@pytest.mark.usefixtures("run_tasks")
def test_forced_reprocess_asks_for_confirmation_then_answers_again(
    superuser_client, conversation, django_capture_on_commit_callbacks
):
    message = stored_unanswered(conversation, body="qual o horário?")
    reprocess_message(message=message)
    post = {"action": "reprocess_messages_force", "_selected_action": [message.pk]}

    confirmation = superuser_client.post(MESSAGES, post)
    assert confirmation.status_code == 200
    assert "mesmo as que já foram respondidas" in confirmation.content.decode()
    assert "qual o horário?" in confirmation.content.decode()
    assert len(replies(conversation)) == 1

    with django_capture_on_commit_callbacks(execute=True):
        done = superuser_client.post(MESSAGES, {**post, "post": "yes"}, follow=True)
    assert "1 mensagem enviada para o agente responder de novo" in done.content.decode()
    assert [r.reply_to_id for r in replies(conversation)] == [message.pk, message.pk]


def test_reprocess_failed_answers_again_when_the_provider_failed_the_reply(conversation, capsys):
    message = stored_unanswered(conversation, body="Vocês fazem bolo?", minutes=40)
    OutboundMessageFactory(
        conversation=conversation,
        reply_to=message,
        status=Message.Status.FAILED,
        outcome=Message.Outcome.FAILED_PERMANENT,
        last_error="permanent / HTTP 400: invalid",
    )

    call_command("reprocess_failed", "--since", "2h")

    assert "1 unanswered message(s) since 2h reprocessed" in capsys.readouterr().out
    assert [r.status for r in replies(conversation)] == ["failed", "queued"]
