"""Issue 8, finding 7: nobody forges an outbound message through the admin.

Outbound messages are created only by services; status, outcome, provider ids,
authorship, chip and priority are never editable; a sent message is immutable.
"""

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse
from django.utils import timezone

from conversations.models import Message
from conversations.outbox import outbox_edit_body
from core.models import AuditEntry
from tests.factories.channels import ChipFactory
from tests.factories.conversations import ConversationFactory, OutboundMessageFactory
from tests.security.forms import change_form_data

pytestmark = pytest.mark.django_db

ADD = reverse("admin:conversations_message_add")


def _change_url(message: Message) -> str:
    return reverse("admin:conversations_message_change", args=[message.pk])


def test_nobody_adds_an_outbound_message_through_the_add_form(
    role_client, superuser_client, django_user_model
):
    conversation = ConversationFactory()
    other_chip = ChipFactory()
    boss = django_user_model.objects.create_user(username="boss", is_staff=True)
    # Even a group granted add_message later gets no add form.
    Group.objects.get(name="sdr").permissions.add(Permission.objects.get(codename="add_message"))
    forged = {
        "conversation": conversation.pk,
        "chip": other_chip.pk,
        "direction": Message.Direction.OUTBOUND,
        "purpose": Message.Purpose.HUMAN,
        "kind": Message.Kind.TEXT,
        "body": "Pague o boleto neste link",
        "status": Message.Status.QUEUED,
        "sent_by": boss.pk,
        "priority": 32000,
        "attempts": 0,
        "next_attempt_at_0": timezone.localdate().isoformat(),
        "next_attempt_at_1": "00:00:00",
        "attempts_log-TOTAL_FORMS": 0,
        "attempts_log-INITIAL_FORMS": 0,
    }

    for client in (role_client("sdr"), superuser_client):
        assert client.get(ADD).status_code == 403
        assert client.post(ADD, forged).status_code == 403
    assert not Message.objects.exists()


def test_ops_correct_the_text_of_a_queued_message_and_nothing_else(role_client, django_user_model):
    message = OutboundMessageFactory(body="Olá, tudo bem?", priority=0)
    boss = django_user_model.objects.create_user(username="boss", is_staff=True)
    client = role_client("ops")
    page = client.get(_change_url(message))
    data = change_form_data(page) | {
        "body": "Olá! Tudo bem?",
        "status": Message.Status.DELIVERED,
        "outcome": Message.Outcome.SENT,
        "provider_message_id": "wamid.forged",
        "sent_by": boss.pk,
        "chip": ChipFactory().pk,
        "priority": 32000,
        "direction": Message.Direction.INBOUND,
    }

    response = client.post(_change_url(message), data)

    assert response.status_code == 302
    fresh = Message.objects.get(pk=message.pk)
    assert fresh.body == "Olá! Tudo bem?"
    assert (
        fresh.status,
        fresh.outcome,
        fresh.provider_message_id,
        fresh.sent_by,
        fresh.chip_id,
        fresh.priority,
        fresh.direction,
    ) == (Message.Status.QUEUED, "", "", None, message.chip_id, 0, Message.Direction.OUTBOUND)
    entry = AuditEntry.objects.get(action="message_edit_body")
    assert (entry.actor_label, entry.object_ids) == ("ops-user", [str(message.pk)])


@pytest.mark.parametrize("status", [Message.Status.SENDING, Message.Status.SENT])
def test_a_message_that_left_is_read_only(role_client, superuser_client, status):
    message = OutboundMessageFactory(status=Message.Status.QUEUED, body="original")
    data = change_form_data(superuser_client.get(_change_url(message))) | {"body": "forged"}
    Message.objects.filter(pk=message.pk).update(status=status)

    for client in (role_client("ops"), superuser_client):
        page = client.get(_change_url(message))
        assert page.status_code == 200
        assert page.context_data["has_change_permission"] is False
        assert client.post(_change_url(message), data).status_code == 403
    assert Message.objects.get(pk=message.pk).body == "original"


def test_a_send_during_the_edit_is_not_undone(role_client):
    message = OutboundMessageFactory(body="original")
    client = role_client("ops")
    data = change_form_data(client.get(_change_url(message))) | {"body": "late edit"}
    # The outbox sends it while the operator is typing.
    Message.objects.filter(pk=message.pk).update(
        status=Message.Status.SENT, outcome=Message.Outcome.SENT, provider_message_id="wamid.1"
    )

    response = client.post(_change_url(message), data)

    assert response.status_code == 403
    fresh = Message.objects.get(pk=message.pk)
    assert (fresh.status, fresh.body) == (Message.Status.SENT, "original")


def test_the_edit_service_never_touches_a_message_that_left():
    message = OutboundMessageFactory(status=Message.Status.SENDING, body="original")

    assert outbox_edit_body(message=message, body="late edit") is False
    assert Message.objects.get(pk=message.pk).body == "original"
