"""Campaign controls through the doors people use: admin buttons and actions, the command."""

import re

import pytest
from django.core.management import CommandError, call_command
from django_q.models import OrmQ

from campaigns.models import Campaign, CampaignRecipient
from campaigns.tasks import campaign_start_due, campaigns_tick
from conversations.models import Message
from core.models import AuditEntry
from tests.campaigns.conftest import statuses
from tests.factories.conversations import LeadFactory

pytestmark = pytest.mark.django_db


def control_url(campaign, action):
    return f"/admin/campaigns/campaign/{campaign.pk}/{action}/"


def shown_controls(page, campaign) -> dict[str, bool]:
    forms = re.findall(r"<form [^>]*campaign-control[^>]*>", page.content.decode())
    return {
        action: " hidden" not in form
        for form in forms
        for action in ("start", "pause", "resume", "cancel")
        if f'action="{control_url(campaign, action)}"' in form
    }


def test_manager_starts_pauses_resumes_and_cancels_with_the_buttons(
    provider_chip, make_campaign, staff_in
):
    campaign = make_campaign([provider_chip()], n=3)
    client = staff_in("manager")
    page = client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    assert page.status_code == 200
    # Every control the manager may use is on the page, shown in the states it
    # applies to (progress.js follows the status without a reload).
    assert shown_controls(page, campaign) == {
        "start": True,
        "pause": False,
        "resume": False,
        "cancel": True,
    }
    # The status and pause reason are the live panel's, not stale form fields.
    assert b'data-field="status_label"' in page.content
    assert b"field-status" not in page.content
    assert b"field-paused_reason" not in page.content

    for action, status in [
        ("start", Campaign.Status.RUNNING),
        ("pause", Campaign.Status.PAUSED),
        ("resume", Campaign.Status.RUNNING),
        ("cancel", Campaign.Status.CANCELLED),
    ]:
        response = client.post(control_url(campaign, action), follow=True)
        assert response.status_code == 200
        campaign.refresh_from_db()
        assert campaign.status == status, action

    assert statuses(campaign) == {"cancelled": 3}
    assert "3 envios cancelados" in response.content.decode()
    actions = list(
        AuditEntry.objects.filter(target="campaigns.campaign")
        .order_by("at")
        .values_list("action", "actor_label", "source")
    )
    assert actions == [
        ("campaign_start", "manager-user", "admin"),
        ("campaign_pause", "manager-user", "admin"),
        ("campaign_resume", "manager-user", "admin"),
        ("campaign_cancel", "manager-user", "admin"),
    ]


def test_ops_may_pause_and_cancel_but_not_start(provider_chip, make_campaign, staff_in):
    campaign = make_campaign([provider_chip()], n=2)
    client = staff_in("ops")
    page = client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    assert control_url(campaign, "start").encode() not in page.content

    assert client.post(control_url(campaign, "start")).status_code == 403
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.RUNNING)
    assert client.post(control_url(campaign, "pause")).status_code == 302
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.PAUSED
    assert client.post(control_url(campaign, "resume")).status_code == 403
    assert client.post(control_url(campaign, "cancel")).status_code == 302
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.CANCELLED


def test_sdr_only_views(provider_chip, make_campaign, staff_in):
    campaign = make_campaign([provider_chip()], n=1)
    client = staff_in("sdr")
    assert client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").status_code == 200
    assert client.get(f"/admin/campaigns/campaign/{campaign.pk}/progress/").status_code == 200
    for action in ("start", "pause", "cancel"):
        assert client.post(control_url(campaign, action)).status_code == 403
    response = client.post(
        "/admin/campaigns/campaign/",
        {"action": "start_campaigns", "_selected_action": [campaign.pk]},
    )
    # The action is not offered to the role: the admin refuses it without running it.
    assert response.status_code in (200, 302)
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT
    assert not AuditEntry.objects.exists()


def test_a_user_without_a_role_gets_403_everywhere(provider_chip, make_campaign, staff_in):
    campaign = make_campaign([provider_chip()], n=1)
    client = staff_in(None)
    assert client.get(f"/admin/campaigns/campaign/{campaign.pk}/progress/").status_code == 403
    assert client.get("/admin/campaigns/campaign/progress/?ids=1").status_code == 403
    assert client.post(control_url(campaign, "start")).status_code == 403


def test_admin_actions_start_and_pause_a_selection(provider_chip, make_campaign, staff_in):
    chip = provider_chip()
    first, second = make_campaign([chip], n=2), make_campaign([chip], n=2)
    client = staff_in("manager")
    response = client.post(
        "/admin/campaigns/campaign/",
        {"action": "start_campaigns", "_selected_action": [first.pk, second.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert set(Campaign.objects.values_list("status", flat=True)) == {"running"}
    assert Message.objects.filter(purpose="campaign").count() == 4
    client.post(
        "/admin/campaigns/campaign/",
        {"action": "pause_campaigns", "_selected_action": [first.pk]},
    )
    assert Campaign.objects.get(pk=first.pk).status == Campaign.Status.PAUSED
    assert Campaign.objects.get(pk=first.pk).paused_reason == "Pausada por manager-user"


def test_a_refused_control_says_why(provider_chip, make_campaign, staff_in):
    campaign = make_campaign([provider_chip()], n=0)
    client = staff_in("manager")
    response = client.post(control_url(campaign, "start"), follow=True)
    assert "não tem destinatários" in response.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT


def test_progress_json_and_changelist(provider_chip, make_campaign, staff_in):
    campaign = make_campaign([provider_chip()], n=4)
    client = staff_in("manager")
    client.post(control_url(campaign, "start"))
    data = client.get(f"/admin/campaigns/campaign/{campaign.pk}/progress/").json()
    assert data["total"] == 4
    assert data["queued"] == 4
    assert data["status"] == "running"
    assert data["estimated_finish"]
    listing = client.get(f"/admin/campaigns/campaign/progress/?ids={campaign.pk}").json()
    assert listing[str(campaign.pk)]["total"] == 4
    assert client.get("/admin/campaigns/campaign/progress/?ids=x").status_code == 400
    page = client.get("/admin/campaigns/campaign/")
    assert b"campaign-progress" in page.content
    # What the row reads once the markup is gone (progress.js refreshes the numbers).
    assert "0 / 4 · 0 enviadas" in re.sub(r"<[^>]+>", "", page.content.decode())


def test_preview_renders_real_recipients(provider_chip, make_campaign, staff_in):
    campaign = make_campaign(
        [provider_chip()], n=2, message_template="Oi {{nome}}!\n---\nOlá {{nome}}, {{cidade}}"
    )
    client = staff_in("manager")
    page = client.get(f"/admin/campaigns/campaign/{campaign.pk}/preview/").content.decode()
    for recipient in campaign.recipients.select_related("lead"):
        assert recipient.lead.name in page
    assert "2 variações" in page


def test_the_command_controls_a_campaign_with_dry_run(provider_chip, make_campaign, capsys):
    campaign = make_campaign([provider_chip()], n=3)

    call_command("campaign", "start", str(campaign.pk), "--dry-run")
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT
    assert "[dry run]" in capsys.readouterr().out
    assert not AuditEntry.objects.exists()

    call_command("campaign", "start", str(campaign.pk))
    out = capsys.readouterr().out
    assert "3 mensagem(ns) na fila" in out
    assert "queued 3" in out
    call_command("campaign", "pause", str(campaign.pk))
    call_command("campaign", "status", str(campaign.pk))
    assert "Pausada por manage.py campaign" in capsys.readouterr().out
    call_command("campaign", "cancel", str(campaign.pk))
    assert "3 envios cancelados" in capsys.readouterr().out
    with pytest.raises(CommandError, match="Só uma campanha pausada"):
        call_command("campaign", "resume", str(campaign.pk))
    with pytest.raises(CommandError, match="does not exist"):
        call_command("campaign", "status", "999999")
    assert list(
        AuditEntry.objects.order_by("at").values_list("action", "source", "actor_label")
    ) == [
        ("campaign_start", "command", "manage.py campaign"),
        ("campaign_pause", "command", "manage.py campaign"),
        ("campaign_cancel", "command", "manage.py campaign"),
    ]


def _start_tasks():
    return [
        q.task["args"]
        for q in OrmQ.objects.order_by("pk")
        if q.task["func"] == "campaigns.tasks.campaign_start_due"
    ]


@pytest.fixture
def big_start(provider_chip, make_campaign, staff_in, settings, django_capture_on_commit_callbacks):
    """A manager starts a campaign with more recipients than a request queues itself."""
    settings.CAMPAIGN_START_INLINE_MAX = 2
    campaign = make_campaign([provider_chip()], n=3)
    client = staff_in("manager")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(control_url(campaign, "start"), follow=True)
    campaign.refresh_from_db()
    return campaign, client, response


def test_a_start_too_big_for_a_request_is_queued_by_a_worker(big_start):
    campaign, _, response = big_start
    assert "Iniciando em segundo plano: 3 destinatários" in response.content.decode()
    assert campaign.status == Campaign.Status.SCHEDULED
    assert statuses(campaign) == {"pending": 3}
    assert not Message.objects.filter(campaign=campaign).exists()
    assert _start_tasks() == [(campaign.pk,)]

    assert "3 mensagem(ns) na fila" in campaign_start_due(campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    assert statuses(campaign) == {"queued": 3}
    assert Message.objects.filter(campaign=campaign, status="queued").count() == 3
    # A second delivery of the task (or the tick after it) starts nothing twice.
    assert campaign_start_due(campaign.pk) == "not scheduled any more"
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    assert Message.objects.filter(campaign=campaign).count() == 3
    assert list(
        AuditEntry.objects.filter(target="campaigns.campaign").values_list("action", "actor_label")
    ) == [("campaign_start", "manager-user")]


def test_the_tick_starts_it_when_the_task_is_lost(big_start):
    campaign, _, _ = big_start
    OrmQ.objects.all().delete()
    assert campaigns_tick()["started"] == 1
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    assert statuses(campaign) == {"queued": 3}


def test_a_pause_before_the_worker_starts_it_wins(big_start):
    campaign, client, _ = big_start
    client.post(control_url(campaign, "pause"))
    assert campaign_start_due(campaign.pk) == "not scheduled any more"
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert not Message.objects.filter(campaign=campaign).exists()


def test_a_big_resume_is_queued_by_a_worker_too(
    provider_chip, make_campaign, staff_in, settings, django_capture_on_commit_callbacks
):
    campaign = make_campaign([provider_chip()], n=1)
    client = staff_in("manager")
    client.post(control_url(campaign, "start"))
    client.post(control_url(campaign, "pause"))
    # Leads added while it was paused wait for the resume.
    CampaignRecipient.objects.bulk_create(
        [CampaignRecipient(campaign=campaign, lead=LeadFactory()) for _ in range(3)]
    )
    settings.CAMPAIGN_START_INLINE_MAX = 2
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(control_url(campaign, "resume"), follow=True)
    assert "Iniciando em segundo plano: 3 destinatários" in response.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.SCHEDULED

    campaign_start_due(campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    assert statuses(campaign) == {"queued": 4}


def test_the_command_queues_a_big_audience_itself(provider_chip, make_campaign, settings):
    settings.CAMPAIGN_START_INLINE_MAX = 0
    campaign = make_campaign([provider_chip()], n=3)
    call_command("campaign", "start", str(campaign.pk))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    assert statuses(campaign) == {"queued": 3}
    assert not _start_tasks()
