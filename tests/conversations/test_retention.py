"""Retention (purge_old_data) and the data-protection erasure of a lead."""

from datetime import timedelta

import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from agent.models import AgentRun
from campaigns.models import CampaignRecipient
from channels.models import WebhookEvent
from conversations import tasks
from conversations.models import Conversation, DeliveryAttempt, Handoff, Lead, LeadIdentity, Message
from conversations.retention import ERASED
from core.models import AuditEntry
from tests.factories import agent as agent_f
from tests.factories import campaigns as campaign_f
from tests.factories import channels as channel_f
from tests.factories import conversations as conv_f

pytestmark = pytest.mark.django_db


def days_ago(days: float):
    return timezone.now() - timedelta(days=days)


def old_conversation(days: int) -> Conversation:
    conversation = conv_f.ConversationFactory(last_message_at=days_ago(days))
    inbound = conv_f.InboundMessageFactory(conversation=conversation)
    reply = conv_f.OutboundMessageFactory(
        conversation=conversation, reply_to=inbound, status="sent", outcome="sent"
    )
    conv_f.DeliveryAttemptFactory(message=reply, outcome="sent", started_at=days_ago(days))
    Message.objects.filter(conversation=conversation).update(created_at=days_ago(days))
    return conversation


@pytest.fixture
def aged_data():
    old = old_conversation(100)
    recent = old_conversation(40)  # messages stay; its sent attempts (30 days) go
    fresh = old_conversation(2)
    long_thread = old_conversation(100)  # old messages, but the lead wrote again yesterday
    new_message = conv_f.InboundMessageFactory(conversation=long_thread)
    Conversation.objects.filter(pk=long_thread.pk).update(last_message_at=days_ago(1))
    stuck = conv_f.OutboundMessageFactory(conversation=old)  # still queued: never purged
    Message.objects.filter(pk=stuck.pk).update(created_at=days_ago(100))
    old_event = channel_f.WebhookEventFactory()
    WebhookEvent.objects.filter(pk=old_event.pk).update(received_at=days_ago(31))
    fresh_event = channel_f.WebhookEventFactory()
    return {
        "old": old,
        "recent": recent,
        "fresh": fresh,
        "long_thread": long_thread,
        "new_message": new_message,
        "stuck": stuck,
        "old_event": old_event,
        "fresh_event": fresh_event,
    }


def test_dry_run_counts_and_deletes_nothing(aged_data, capsys):
    before = (Message.objects.count(), Conversation.objects.count(), WebhookEvent.objects.count())

    call_command("purge_old_data", "--dry-run")

    out = capsys.readouterr().out
    assert "messages: 4 would be deleted" in out
    assert "delivery_attempts: 3 would be deleted" in out
    assert "webhook_events: 1 would be deleted" in out
    assert before == (
        Message.objects.count(),
        Conversation.objects.count(),
        WebhookEvent.objects.count(),
    )
    assert not AuditEntry.objects.exists()


def test_purge_deletes_by_the_retention_settings_in_batches(aged_data, capsys):
    call_command("purge_old_data", "--batch-size", "2")

    out = capsys.readouterr().out
    assert set(Conversation.objects.values_list("pk", flat=True)) == {
        aged_data["old"].pk,  # its queued message keeps it
        aged_data["recent"].pk,
        aged_data["fresh"].pk,
        aged_data["long_thread"].pk,
    }
    assert set(Message.objects.values_list("pk", flat=True)) == {
        aged_data["stuck"].pk,
        aged_data["new_message"].pk,
        *Message.objects.filter(
            conversation__in=[aged_data["recent"], aged_data["fresh"]]
        ).values_list("pk", flat=True),
    }
    assert Message.objects.filter(conversation=aged_data["recent"]).count() == 2
    # Sent attempts older than 30 days go; the fresh conversation's stay.
    assert list(DeliveryAttempt.objects.values_list("message__conversation", flat=True)) == [
        aged_data["fresh"].pk
    ]
    assert list(WebhookEvent.objects.values_list("pk", flat=True)) == [aged_data["fresh_event"].pk]
    assert "in 5 batch(es)" in out  # attempts 2+1, events 1, messages 2+2 (by two)
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.source) == ("purge_old_data", "command")
    assert entry.detail == {
        "delivery_attempts": 3,
        "webhook_events": 1,
        "messages": 4,
        "conversations": 0,
    }


def test_a_conversation_whose_messages_are_all_gone_is_deleted():
    conversation = old_conversation(120)

    call_command("purge_old_data")

    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.exists()


def test_the_daily_task_purges_and_is_scheduled():
    from django_q.models import Schedule

    from core.schedules import ensure_schedules

    old_conversation(95)
    assert tasks.purge_old_data()["messages"] == 2
    assert AuditEntry.objects.get().source == "task"
    assert tasks.purge_old_data() == {
        "delivery_attempts": 0,
        "webhook_events": 0,
        "messages": 0,
        "conversations": 0,
    }
    assert AuditEntry.objects.count() == 1  # a run that deleted nothing is not audited
    ensure_schedules()
    assert Schedule.objects.get(func="conversations.tasks.purge_old_data").minutes == 24 * 60


# --- anonymize -------------------------------------------------------------------------


@pytest.fixture
def person():
    lead = conv_f.LeadFactory(
        phone="+5511987654321", name="Daniella Harumi", email="dani@example.com", company="ACME"
    )
    conv_f.LeadIdentityFactory(lead=lead)
    conversation = conv_f.ConversationFactory(lead=lead, context={"cidade": "São Paulo"})
    event = channel_f.WebhookEventFactory(chip=conversation.chip)
    inbound = conv_f.InboundMessageFactory(
        conversation=conversation, body="meu cpf é 123", webhook_event=event, status="processed"
    )
    conv_f.OutboundMessageFactory(
        conversation=conversation, reply_to=inbound, body="Oi Daniella!", status="sent"
    )
    conv_f.HandoffFactory(conversation=conversation, note="Daniella quer desconto")
    agent_f.AgentRunFactory(conversation=conversation, tool_calls=[{"name": "Daniella"}])
    campaign_f.CampaignRecipientFactory(lead=lead, variables={"name": "Daniella"})
    other = conv_f.InboundMessageFactory(body="outra pessoa")
    return lead, other


def _anonymize(client, lead, **extra):
    return client.post(
        reverse("admin:conversations_lead_changelist"),
        {"action": "anonymize_leads", helpers.ACTION_CHECKBOX_NAME: [lead.pk], **extra},
    )


def test_ops_anonymize_a_lead_keeping_the_statistics(client, django_user_model, person):
    lead, other = person
    ops = django_user_model.objects.create_user("ana", password="x", is_staff=True)
    ops.groups.add(Group.objects.get(name="ops"))
    client.force_login(ops)

    confirm = _anonymize(client, lead)
    assert confirm.status_code == 200
    assert "apagados para sempre" in confirm.content.decode()
    assert Lead.objects.get(pk=lead.pk).name == "Daniella Harumi"

    assert _anonymize(client, lead, post="yes").status_code == 302

    lead.refresh_from_db()
    assert (lead.phone, lead.name, lead.email, lead.company) == (None, ERASED, "", "")
    assert lead.opted_out
    assert not LeadIdentity.objects.filter(lead=lead).exists()
    messages = Message.objects.filter(conversation__lead=lead)
    assert messages.count() == 2  # the statistics keep their rows…
    assert set(messages.values_list("body", flat=True)) == {ERASED}  # …without the words
    assert set(messages.values_list("status", flat=True)) == {"processed", "sent"}
    assert not WebhookEvent.objects.filter(chip__conversations__lead=lead).exists()
    assert Conversation.objects.get(lead=lead).context == {}
    assert Handoff.objects.get(conversation__lead=lead).note == ""
    assert AgentRun.objects.get(conversation__lead=lead).tool_calls == []
    assert CampaignRecipient.objects.get(lead=lead).variables == {}
    other.refresh_from_db()
    assert other.body == "outra pessoa"
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor, entry.object_ids) == ("lead_anonymize", ops, [str(lead.pk)])
    assert entry.detail["messages"] == 2


@pytest.mark.parametrize("role", ["manager", "sdr"])
def test_only_ops_may_anonymize(client, django_user_model, person, role):
    lead, _ = person
    user = django_user_model.objects.create_user(f"u-{role}", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)

    _anonymize(client, lead, post="yes")

    lead.refresh_from_db()
    assert lead.name == "Daniella Harumi"
    assert not AuditEntry.objects.exists()
