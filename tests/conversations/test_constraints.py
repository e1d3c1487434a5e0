"""The invariants the database itself must enforce, whatever code writes."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from conversations.models import Conversation, Handoff, Lead, Message
from tests.factories.channels import ChipFactory, WebhookEventFactory
from tests.factories.conversations import (
    ConversationFactory,
    HandoffFactory,
    InboundMessageFactory,
    LeadFactory,
    OutboundMessageFactory,
)

pytestmark = pytest.mark.django_db


def test_one_lead_per_phone():
    LeadFactory(phone="+5511999990000")
    with pytest.raises(IntegrityError), transaction.atomic():
        LeadFactory(phone="+5511999990000")


def test_leads_without_phone_can_coexist():
    # @lid-only leads have no phone yet; NULLs must not collide.
    LeadFactory(phone=None)
    LeadFactory(phone=None)
    assert Lead.objects.filter(phone__isnull=True).count() == 2


def test_lead_phone_must_be_e164():
    lead = LeadFactory.build(phone="5511999990000")
    with pytest.raises(ValidationError, match=r"E\.164"):
        lead.full_clean()


def test_one_inbound_message_per_chip_and_provider_id():
    first = InboundMessageFactory(provider_message_id="wamid.ABC")
    with pytest.raises(IntegrityError), transaction.atomic():
        InboundMessageFactory(conversation=first.conversation, provider_message_id="wamid.ABC")


def test_same_provider_id_on_another_chip_is_another_message():
    InboundMessageFactory(provider_message_id="wamid.ABC")
    InboundMessageFactory(provider_message_id="wamid.ABC")
    assert Message.objects.filter(provider_message_id="wamid.ABC").count() == 2


def test_inbound_messages_without_provider_id_do_not_collide():
    first = InboundMessageFactory(provider_message_id="")
    InboundMessageFactory(conversation=first.conversation, provider_message_id="")


def test_status_must_match_direction():
    with pytest.raises(IntegrityError), transaction.atomic():
        OutboundMessageFactory(status=Message.Status.RECEIVED)
    with pytest.raises(IntegrityError), transaction.atomic():
        InboundMessageFactory(status=Message.Status.QUEUED)


def test_one_open_conversation_per_lead_and_chip():
    conversation = ConversationFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        ConversationFactory(lead=conversation.lead, chip=conversation.chip)


def test_closed_conversations_do_not_block_a_new_open_one():
    conversation = ConversationFactory(status=Conversation.Status.CLOSED)
    ConversationFactory(lead=conversation.lead, chip=conversation.chip)
    ConversationFactory(lead=conversation.lead, chip=ChipFactory())
    assert conversation.lead.conversations.count() == 3


def test_one_active_handoff_per_conversation():
    handoff = HandoffFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        HandoffFactory(conversation=handoff.conversation)
    handoff.status = Handoff.Status.RESOLVED
    handoff.save()
    HandoffFactory(conversation=handoff.conversation)


def test_webhook_event_dedupe_key_unique_per_chip():
    event = WebhookEventFactory(dedupe_key="delivery-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        WebhookEventFactory(chip=event.chip, dedupe_key="delivery-1")
    WebhookEventFactory(dedupe_key="delivery-1")  # another chip
    WebhookEventFactory(chip=event.chip, dedupe_key="")
    WebhookEventFactory(chip=event.chip, dedupe_key="")
