import pytest
from django.contrib.auth.models import Group

from core.roles import ROLES, role_permission_codenames
from tests.factories.campaigns import CampaignFactory
from tests.factories.conversations import ConversationFactory

pytestmark = pytest.mark.django_db


def test_data_migration_created_every_role_with_exactly_its_permissions():
    for role in ROLES:
        group = Group.objects.get(name=role)
        granted = {
            (perm.content_type.app_label, perm.codename)
            for perm in group.permissions.select_related("content_type")
        }
        assert granted == role_permission_codenames(role)


@pytest.fixture
def staff_in(django_user_model, client):
    def login(role: str):
        user = django_user_model.objects.create_user(
            username=f"{role}-user", password="pw", is_staff=True
        )
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        return client

    return login


def test_sdr_sees_conversations_reads_campaigns_but_not_chips(staff_in):
    conversation = ConversationFactory()
    client = staff_in("sdr")

    assert client.get("/admin/conversations/conversation/").status_code == 200
    assert (
        client.get(f"/admin/conversations/conversation/{conversation.pk}/change/").status_code
        == 200
    )
    # Issue 10: SDRs may look at campaigns (who is being contacted), nothing more.
    assert client.get("/admin/campaigns/campaign/").status_code == 200
    assert client.get("/admin/campaigns/campaign/add/").status_code == 403
    assert client.get("/admin/channels/chip/").status_code == 403


def test_manager_creates_campaigns_but_cannot_edit_chips(staff_in):
    campaign = CampaignFactory()
    client = staff_in("manager")

    assert client.get("/admin/campaigns/campaign/add/").status_code == 200
    assert client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").status_code == 200
    assert client.get("/admin/channels/chip/").status_code == 200  # view only
    assert client.get("/admin/channels/chip/add/").status_code == 403


def test_ops_manage_chips_and_read_worker_tasks(staff_in):
    client = staff_in("ops")

    assert client.get("/admin/channels/chip/add/").status_code == 200
    assert client.get("/admin/channels/webhookevent/").status_code == 200
    assert client.get("/admin/django_q/schedule/").status_code == 200
    assert client.get("/admin/campaigns/campaign/add/").status_code == 403
