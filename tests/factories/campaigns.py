import factory

from campaigns.models import Campaign, CampaignRecipient
from tests.factories.conversations import LeadFactory


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Campanha {n}")
    message_template = "Oi {{nome}}, tudo bem? Posso te mostrar uma novidade?"

    @factory.post_generation
    def chips(self, create: bool, extracted, **kwargs) -> None:
        if create and extracted:
            self.chips.set(extracted)


class CampaignRecipientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CampaignRecipient

    campaign = factory.SubFactory(CampaignFactory)
    lead = factory.SubFactory(LeadFactory)
