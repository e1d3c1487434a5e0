"""What a new ops person reads in the admin: words instead of codes, links between records."""

import pytest
from django.urls import reverse

from conversations.models import Message
from tests.factories import conversations as conv_f

pytestmark = pytest.mark.django_db


def test_outcome_filter_reads_as_words(superuser_client):
    conv_f.OutboundMessageFactory(status="failed", outcome=Message.Outcome.FAILED_PROVIDER)

    page = superuser_client.get(reverse("admin:conversations_message_changelist")).content.decode()

    assert "Falha do provedor" in page
    assert "FAILED_PROVIDER" not in page


def test_a_finished_flow_reads_as_concluded(superuser_client):
    conv_f.ConversationFactory(flow_step="__done__")

    page = superuser_client.get(
        reverse("admin:conversations_conversation_changelist")
    ).content.decode()

    assert "concluído" in page
    assert "__done__" not in page


def test_an_inbound_message_links_its_reply_and_a_lead_its_conversations(superuser_client):
    inbound = conv_f.InboundMessageFactory(body="quanto custa?")
    reply = conv_f.OutboundMessageFactory(
        conversation=inbound.conversation, reply_to=inbound, body="Custa R$ 10."
    )

    message_page = superuser_client.get(
        reverse("admin:conversations_message_change", args=[inbound.pk])
    ).content.decode()
    lead_page = superuser_client.get(
        reverse("admin:conversations_lead_change", args=[inbound.conversation.lead_id])
    ).content.decode()

    assert reverse("admin:conversations_message_change", args=[reply.pk]) in message_page
    assert "Custa R$ 10." in message_page
    conversation_url = reverse(
        "admin:conversations_conversation_change", args=[inbound.conversation_id]
    )
    assert conversation_url in lead_page


def test_the_first_message_of_a_burst_links_the_reply_that_answered_the_burst(superuser_client):
    first = conv_f.InboundMessageFactory(body="oi")
    last = conv_f.InboundMessageFactory(conversation=first.conversation, body="quanto custa?")
    reply = conv_f.OutboundMessageFactory(
        conversation=first.conversation, reply_to=last, body="Custa R$ 10."
    )
    unanswered = conv_f.InboundMessageFactory(conversation=first.conversation, body="e frete?")

    page = superuser_client.get(
        reverse("admin:conversations_message_change", args=[first.pk])
    ).content.decode()
    assert reverse("admin:conversations_message_change", args=[reply.pk]) in page
    assert "Respondida junto com a mensagem" in page
    assert reverse("admin:conversations_message_change", args=[last.pk]) in page
    later = superuser_client.get(
        reverse("admin:conversations_message_change", args=[unanswered.pk])
    ).content.decode()
    assert reverse("admin:conversations_message_change", args=[reply.pk]) not in later


def test_messages_changelist_puts_body_status_and_outcome_before_the_rest(superuser_client):
    from django.contrib import admin

    columns = admin.site._registry[Message].list_display
    assert columns.index("outcome") < columns.index("chip")
    assert len(columns) <= 9
