"""Every admin page of ours loads for a superuser, with a query count that
does not grow with the number of rows (no N+1 on changelists of millions)."""

from collections.abc import Callable

import pytest
from django.contrib import admin
from django.db import connection
from django.db.models import Model
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.models import ChatwootMirror
from tests.factories import agent as agent_f
from tests.factories import campaigns as campaign_f
from tests.factories import channels as channel_f
from tests.factories import conversations as conv_f
from tests.factories import core as core_f

OUR_APPS = {"core", "channels", "conversations", "campaigns", "agent"}
MAX_QUERIES = 20


def _conversation_with_history():
    conversation = conv_f.ConversationFactory()
    inbound = conv_f.InboundMessageFactory(conversation=conversation)
    conv_f.OutboundMessageFactory(conversation=conversation, reply_to=inbound)
    conv_f.HandoffFactory(conversation=conversation)
    return conversation


def _campaign_with_audience():
    campaign = campaign_f.CampaignFactory(
        chips=[channel_f.ChipFactory(), channel_f.ChipFactory()],
        agent_profile=agent_f.AgentProfileFactory(),
    )
    campaign_f.CampaignRecipientFactory.create_batch(2, campaign=campaign)
    return campaign


def _chip_with_failures():
    chip = channel_f.ChipFactory(agent_profile=agent_f.AgentProfileFactory())
    conv_f.DeliveryAttemptFactory.create_batch(
        2, message=conv_f.OutboundMessageFactory(conversation__chip=chip)
    )
    return chip


def _outbound_with_attempts():
    message = conv_f.OutboundMessageFactory(reply_to=conv_f.InboundMessageFactory())
    conv_f.DeliveryAttemptFactory.create_batch(2, message=message)
    return message


def _flow_with_steps():
    flow = agent_f.FlowFactory()
    agent_f.FlowStepFactory.create_batch(3, flow=flow)
    return flow


_heartbeat_counter = iter(range(10**6))


# One builder per registered model: a new ModelAdmin without one fails below.
def _refused_mirror():
    message = conv_f.InboundMessageFactory()
    return ChatwootMirror.objects.create(
        conversation=message.conversation,
        message=message,
        kind=ChatwootMirror.Kind.MESSAGE,
        state=ChatwootMirror.State.FAILED,
        attempts=1,
        last_error="message_create: HTTP 422",
    )


BUILDERS: dict[str, Callable[[], Model]] = {
    "conversations.chatwootmirror": _refused_mirror,
    "core.workerheartbeat": lambda: core_f.WorkerHeartbeatFactory(
        cluster=f"cluster-{next(_heartbeat_counter)}"
    ),
    "core.auditentry": core_f.AuditEntryFactory,
    "core.alert": core_f.AlertFactory,
    "channels.chip": _chip_with_failures,
    "channels.webhookevent": channel_f.WebhookEventFactory,
    "conversations.lead": lambda: conv_f.LeadIdentityFactory().lead,
    "conversations.conversation": _conversation_with_history,
    "conversations.message": _outbound_with_attempts,
    "conversations.handoff": conv_f.HandoffFactory,
    "campaigns.campaign": _campaign_with_audience,
    "campaigns.campaignrecipient": campaign_f.CampaignRecipientFactory,
    "agent.agentprofile": lambda: agent_f.AgentProfileFactory(flow=agent_f.FlowFactory()),
    "agent.flow": _flow_with_steps,
    "agent.agentrun": agent_f.AgentRunFactory,
}

REGISTERED = sorted(
    model._meta.label_lower for model in admin.site._registry if model._meta.app_label in OUR_APPS
)


def test_every_registered_model_has_a_builder():
    assert set(REGISTERED) == set(BUILDERS)


def _get(client, url: str) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    return response.status_code, len(queries)


@pytest.mark.django_db
@pytest.mark.parametrize("label", REGISTERED)
def test_changelist_queries_do_not_grow_with_rows(superuser_client, label):
    build = BUILDERS[label]
    app_label, model_name = label.split(".")
    url = reverse(f"admin:{app_label}_{model_name}_changelist")
    for _ in range(3):
        build()
    status, few = _get(superuser_client, url)
    assert status == 200
    for _ in range(6):
        build()
    status, more = _get(superuser_client, url)
    assert status == 200
    assert more == few, f"{label} changelist: {few} queries with 3 rows, {more} with 9"
    assert more <= MAX_QUERIES


@pytest.mark.django_db
@pytest.mark.parametrize("label", REGISTERED)
def test_change_and_add_pages_load(superuser_client, superuser, label):
    obj = BUILDERS[label]()
    app_label, model_name = label.split(".")
    model_admin = admin.site._registry[obj.__class__]

    status, queries = _get(
        superuser_client, reverse(f"admin:{app_label}_{model_name}_change", args=[obj.pk])
    )
    assert status == 200
    assert queries <= MAX_QUERIES + 10, f"{label} change page: {queries} queries"

    status, _ = _get(superuser_client, reverse(f"admin:{app_label}_{model_name}_add"))
    # Records only the platform writes (events, runs, heartbeats) have no add page.
    request = RequestFactory().get("/")
    request.user = superuser
    expected = 200 if model_admin.has_add_permission(request) else 403
    assert status == expected


@pytest.mark.django_db
def test_admin_search_finds_a_lead_by_the_phone_as_operators_type_it(superuser_client):
    conv_f.LeadFactory(phone="+5511987654321", name="Daniella Harumi")
    conv_f.LeadFactory(phone="+5511912345678", name="Outra Pessoa")

    for typed in ["(11) 98765-4321", "5511987654321", "+55 11 98765-4321"]:
        response = superuser_client.get(
            reverse("admin:conversations_lead_changelist"), {"q": typed}
        )
        page = response.content.decode()
        assert "Daniella Harumi" in page, typed
        assert "Outra Pessoa" not in page, typed


@pytest.mark.django_db
def test_big_unfiltered_changelists_use_the_planner_estimate(superuser_client, monkeypatch):
    from core.admin_utils import EstimatedCountPaginator

    monkeypatch.setattr(EstimatedCountPaginator, "EXACT_BELOW", 10)
    leads = conv_f.LeadFactory.create_batch(30)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE conversations_lead")
    for lead in leads[:10]:
        lead.delete()  # the estimate still says 30 until the next ANALYZE
    url = reverse("admin:conversations_lead_changelist")

    unfiltered = superuser_client.get(url).content.decode()
    filtered = superuser_client.get(url, {"opted_out__exact": "0"}).content.decode()

    assert "30 leads" in unfiltered
    assert "20 resultados" in filtered or "20 results" in filtered
