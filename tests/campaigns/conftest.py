import pytest

from campaigns.models import Campaign, CampaignRecipient
from tests.agent.conftest import (  # noqa: F401 - fixtures
    fake_zapi,
    flow_profile,
    qualification_flow,
    run_tasks,
    zapi_chip,
)
from tests.conversations.conftest import fake_provider, provider_chip  # noqa: F401 - fixtures
from tests.factories.campaigns import CampaignFactory
from tests.factories.conversations import LeadFactory


@pytest.fixture
def make_campaign(db):
    """A draft campaign over `chips` with `n` fresh leads (or the given ones)."""

    def make(chips, n=0, leads=None, **kwargs):
        campaign = CampaignFactory(chips=list(chips), **kwargs)
        leads = list(leads or []) + [LeadFactory() for _ in range(n)]
        CampaignRecipient.objects.bulk_create(
            [CampaignRecipient(campaign=campaign, lead=lead) for lead in leads]
        )
        return campaign

    return make


def statuses(campaign: Campaign) -> dict[str, int]:
    from collections import Counter

    return dict(Counter(campaign.recipients.values_list("status", flat=True)))


@pytest.fixture
def staff_in(django_user_model, client):
    """A logged-in staff user in one role group (or none)."""
    from django.contrib.auth.models import Group

    def login(role: str | None):
        user = django_user_model.objects.create_user(
            username=f"{role or 'nobody'}-user", password="pw", is_staff=True
        )
        if role:
            user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        return client

    return login
