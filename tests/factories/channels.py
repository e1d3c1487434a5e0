import factory

from channels.models import Chip, Provider, WebhookEvent


class ChipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Chip

    name = factory.Sequence(lambda n: f"Chip {n}")
    provider = Provider.SANDBOX
    phone = factory.Sequence(lambda n: f"+55119{n:08d}")
    status = Chip.Status.CONNECTED


class WebhookEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WebhookEvent

    chip = factory.SubFactory(ChipFactory)
    provider = factory.SelfAttribute("chip.provider")
    event_type = "message"
    dedupe_key = factory.Sequence(lambda n: f"evt-{n}")
    payload = factory.LazyAttribute(lambda o: {"id": o.dedupe_key, "text": "oi"})
