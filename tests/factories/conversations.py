import factory
from django.utils import timezone

from conversations.models import (
    Conversation,
    DeliveryAttempt,
    Handoff,
    Lead,
    LeadIdentity,
    Message,
)
from tests.factories.channels import ChipFactory


class LeadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Lead

    phone = factory.Sequence(lambda n: f"+55219{n:08d}")
    name = factory.Faker("name", locale="pt_BR")


class ConversationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Conversation

    lead = factory.SubFactory(LeadFactory)
    chip = factory.SubFactory(ChipFactory)
    last_message_at = factory.LazyFunction(timezone.now)


class InboundMessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    chip = factory.SelfAttribute("conversation.chip")
    direction = Message.Direction.INBOUND
    purpose = Message.Purpose.INBOUND
    status = Message.Status.RECEIVED
    body = factory.Faker("sentence", locale="pt_BR")
    provider_message_id = factory.Sequence(lambda n: f"wamid.in.{n}")


class OutboundMessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    chip = factory.SelfAttribute("conversation.chip")
    direction = Message.Direction.OUTBOUND
    purpose = Message.Purpose.REPLY
    status = Message.Status.QUEUED
    body = factory.Faker("sentence", locale="pt_BR")
    next_attempt_at = factory.LazyFunction(timezone.now)


class HandoffFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Handoff

    conversation = factory.SubFactory(ConversationFactory)
    reason = Handoff.Reason.LEAD_REQUEST


class LeadIdentityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LeadIdentity

    lead = factory.SubFactory(LeadFactory)
    provider = "evolution"
    external_id = factory.Sequence(lambda n: f"1000000000{n:05d}@lid")
    is_lid = True


class DeliveryAttemptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeliveryAttempt

    message = factory.SubFactory(OutboundMessageFactory)
    chip = factory.SelfAttribute("message.chip")
    started_at = factory.LazyFunction(timezone.now)
    duration_ms = 180
    outcome = DeliveryAttempt.Outcome.PERMANENT
    http_status = 400
    error_code = "131026"
    error = "Message undeliverable"
