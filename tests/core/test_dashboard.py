"""The operations dashboard: the admin's home page for ops and managers."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, CampaignRecipient
from channels.models import Chip
from conversations.models import Conversation, Handoff, Message
from core.models import Alert, WorkerHeartbeat
from tests.factories import campaigns as campaign_f
from tests.factories import channels as channel_f
from tests.factories import conversations as conv_f
from tests.factories import core as core_f


@pytest.fixture(autouse=True)
def _fresh_throttle():
    # The web process's heartbeat check is throttled through the cache.
    cache.clear()
    yield
    cache.clear()


def staff(django_user_model, role: str | None):
    user = django_user_model.objects.create_user(username=f"u-{role}", password="x", is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def sent(chip: Chip, *, hours_ago: float, outcome: str = "sent", **extra) -> Message:
    at = timezone.now() - timedelta(hours=hours_ago)
    failed = outcome != "sent"
    message = conv_f.OutboundMessageFactory(
        conversation__chip=chip,
        status="failed" if failed else "sent",
        outcome=outcome,
        sent_at=None if failed else at,
        failed_at=at if failed else None,
        next_attempt_at=None,
        **extra,
    )
    Message.objects.filter(pk=message.pk).update(created_at=at - timedelta(minutes=1))
    return message


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["ops", "manager"])
def test_ops_and_managers_land_on_the_dashboard(client, django_user_model, role):
    client.force_login(staff(django_user_model, role))

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200
    page = response.content.decode()
    assert "Painel de operação" in page
    assert 'id="tile-worker"' in page
    assert "<svg" in page


@pytest.mark.django_db
def test_an_sdr_gets_the_plain_index_and_no_tiles(client, django_user_model):
    client.force_login(staff(django_user_model, "sdr"))

    index = client.get(reverse("admin:index"))
    tiles = client.get(reverse("admin:dashboard_tiles"))

    assert index.status_code == 200
    assert 'id="tile-worker"' not in index.content.decode()
    assert tiles.status_code == 403


@pytest.mark.django_db
def test_root_and_view_site_lead_to_the_dashboard(client, django_user_model):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")

    client.force_login(staff(django_user_model, "ops"))
    page = client.get(reverse("admin:index")).content.decode()
    assert f'href="{reverse("admin:index")}">' in page  # "Ver o site" points at the dashboard


@pytest.mark.django_db
def test_tiles_show_the_incident_state_and_link_to_the_rows_behind_them(
    client, django_user_model, settings
):
    client.force_login(staff(django_user_model, "ops"))
    core_f.WorkerHeartbeatFactory(beat_at=timezone.now() - timedelta(minutes=10))
    core_f.WorkerHeartbeatFactory(cluster=settings.Q_AGENT_CLUSTER)
    chip = channel_f.ChipFactory(
        name="Chip SP", status=Chip.Status.RESTRICTED, last_error="account restricted"
    )
    for _ in range(3):
        conv_f.OutboundMessageFactory(conversation__chip=chip)
    Message.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=40))
    failed = sent(chip, hours_ago=2, outcome="failed_provider", last_error="timeout")
    waiting = conv_f.InboundMessageFactory(conversation__chip=chip)
    Conversation.objects.filter(pk=waiting.conversation_id).update(
        last_inbound_at=timezone.now() - timedelta(minutes=7)
    )
    conv_f.HandoffFactory(conversation__chip=chip)

    response = client.get(reverse("admin:dashboard_tiles"))

    page = response.content.decode()
    worker = _tile(page, "tile-worker")
    assert "parado" in worker
    assert "10 min" in worker
    assert 'class="tile bad"' in worker
    outbox = _tile(page, "tile-outbox")
    assert "<strong>3</strong>" in outbox
    assert "40 min" in outbox
    assert "status__in=queued%2Csending" in outbox
    assert "<strong>1</strong>" in _tile(page, "tile-failed")
    awaiting = _tile(page, "tile-awaiting")
    assert "<strong>1</strong>" in awaiting
    assert "7 min" in awaiting
    assert "<strong>1</strong>" in _tile(page, "tile-handoffs")
    assert "Restrito" in page
    assert "account restricted" in page
    # The heartbeat rule ran on this request: a dead worker is noticed by the web.
    assert Alert.objects.filter(condition="worker_down", status="open").count() == 1
    assert "Worker parado" in page

    # The tiles' links lead to exactly the rows they count.
    failed_list = client.get(_href(page, "tile-failed")).content.decode()
    assert f"/{failed.pk}/change/" in failed_list
    awaiting_list = client.get(_href(page, "tile-awaiting")).content.decode()
    assert f"/{waiting.pk}/change/" in awaiting_list
    assert f"/{failed.pk}/change/" not in awaiting_list


@pytest.mark.django_db
def test_sends_chart_draws_each_hour_by_outcome(client, django_user_model):
    client.force_login(staff(django_user_model, "manager"))
    chip = channel_f.ChipFactory()
    for _ in range(4):
        sent(chip, hours_ago=1)
    sent(chip, hours_ago=3, outcome="failed_permanent")
    sent(chip, hours_ago=30)  # older than the chart

    page = client.get(reverse("admin:dashboard_tiles")).content.decode()

    bars = re.findall(r'<rect[^>]*data-series="([^"]+)"><title>(\d\d)h: (\d+)', page)
    assert sorted((series, int(n)) for series, _, n in bars) == [
        ("enviadas", 4),
        ("falha permanente", 1),
    ]
    assert "4 enviadas" in page


@pytest.mark.django_db
def test_chip_row_shows_todays_sends_against_the_cap_and_a_blocked_chip(client, django_user_model):
    client.force_login(staff(django_user_model, "ops"))
    chip = channel_f.ChipFactory(name="Chip bloqueado", daily_cap=80, can_prospect=False)
    Chip.objects.filter(pk=chip.pk).update(can_follow_up=False)
    for started in [timezone.now(), timezone.now(), timezone.now() - timedelta(days=2)]:
        conv_f.DeliveryAttemptFactory(
            message=sent(chip, hours_ago=0), outcome="sent", started_at=started
        )
    conv_f.DeliveryAttemptFactory(message=sent(chip, hours_ago=0), outcome="transient")

    page = client.get(reverse("admin:dashboard_tiles")).content.decode()

    row = page[page.index("Chip bloqueado") :]
    row = row[: row.index("</tr>")]
    assert "2 / 80" in row
    assert "bloqueado" in row.lower()


@pytest.mark.django_db
def test_running_campaigns_show_their_progress(client, django_user_model):
    client.force_login(staff(django_user_model, "manager"))
    campaign = campaign_f.CampaignFactory(name="Black Friday", status=Campaign.Status.RUNNING)
    statuses = ["sent", "sent", "sent", "failed", "pending"]
    for status in statuses:
        campaign_f.CampaignRecipientFactory(campaign=campaign, status=status)
    campaign_f.CampaignFactory(name="Rascunho velho", status=Campaign.Status.DRAFT)

    page = client.get(reverse("admin:dashboard_tiles")).content.decode()

    assert "Black Friday" in page
    assert "Rascunho velho" not in page
    assert 'style="width: 80%"' in page
    assert "3 enviadas · 1 falhas · 5 no total" in page
    assert CampaignRecipient.objects.count() == 5


@pytest.mark.django_db
def test_agent_response_percentiles_come_from_replies(client, django_user_model):
    client.force_login(staff(django_user_model, "ops"))
    now = timezone.now()
    for seconds in [2, 3, 4, 5, 40]:
        inbound = conv_f.InboundMessageFactory()
        reply = conv_f.OutboundMessageFactory(conversation=inbound.conversation, reply_to=inbound)
        Message.objects.filter(pk=inbound.pk).update(created_at=now - timedelta(seconds=seconds))
        Message.objects.filter(pk=reply.pk).update(created_at=now)

    page = client.get(reverse("admin:dashboard_tiles")).content.decode()

    tile = _tile(page, "tile-agent")
    assert "p50 4 s · p95 40 s" in re.sub(r"<[^>]+>", "", tile)
    # Never "p95" on one line and "40 s" on the next.
    assert '<span class="nowrap">p95 40 s</span>' in tile


@pytest.mark.django_db
def test_dashboard_queries_do_not_grow_with_rows(client, django_user_model):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(staff(django_user_model, "ops"))

    def build():
        chip = channel_f.ChipFactory()
        sent(chip, hours_ago=2)
        conv_f.HandoffFactory(conversation__chip=chip, status=Handoff.Status.OPEN)
        campaign_f.CampaignFactory(status=Campaign.Status.RUNNING)
        core_f.AlertFactory()

    build()
    client.get(reverse("admin:dashboard_tiles"))  # the throttled heartbeat check runs once
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("admin:dashboard_tiles"))
    for _ in range(4):
        build()
    with CaptureQueriesContext(connection) as more:
        client.get(reverse("admin:dashboard_tiles"))
    assert len(more) == len(few)


def _tile(page: str, tile_id: str) -> str:
    start = page.index(f'id="{tile_id}"')
    start = page.rindex("<a ", 0, start)
    return page[start : page.index("</a>", start)]


def _href(page: str, tile_id: str) -> str:
    return re.search(r'href="([^"]+)"', _tile(page, tile_id)).group(1).replace("&amp;", "&")


@pytest.mark.django_db
def test_worker_tile_is_bad_when_only_the_agent_cluster_is_down(
    client, django_user_model, settings
):
    # Webhooks, statuses and sends run: every lead still goes unanswered.
    client.force_login(staff(django_user_model, "ops"))
    core_f.WorkerHeartbeatFactory()

    worker = _tile(client.get(reverse("admin:dashboard_tiles")).content.decode(), "tile-worker")
    assert 'class="tile bad"' in worker
    assert "worker do agente: nunca rodou" in worker

    core_f.WorkerHeartbeatFactory(
        cluster=settings.Q_AGENT_CLUSTER, beat_at=timezone.now() - timedelta(minutes=10)
    )
    worker = _tile(client.get(reverse("admin:dashboard_tiles")).content.decode(), "tile-worker")
    assert 'class="tile bad"' in worker
    assert "worker do agente: último heartbeat há 10 min" in worker

    WorkerHeartbeat.objects.filter(cluster=settings.Q_AGENT_CLUSTER).update(beat_at=timezone.now())
    worker = _tile(client.get(reverse("admin:dashboard_tiles")).content.decode(), "tile-worker")
    assert 'class="tile ok"' in worker
