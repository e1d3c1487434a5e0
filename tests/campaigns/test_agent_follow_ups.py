"""An agent profile's follow-ups: a lead who stops answering the flow gets a nudge.

The conversation happens the real way: Z-API webhooks in, django-q2 in sync
mode running the agent, the flow's questions out through a local fake Z-API.
The clock is time-machine's; the periodic task (`campaigns_tick`) queues the
nudges and the outbox drain sends them.
"""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from agent.flows import FLOW_DONE
from agent.models import AgentProfile, default_follow_up_text
from agent.selectors import profile_for, profile_id_expression
from campaigns.tasks import campaigns_tick
from conversations import outbox
from conversations.models import Conversation, Handoff, Message
from conversations.ownership import conversation_set_owner
from tests.agent.conftest import agent_settings  # noqa: F401 - autouse: no LLM, no burst wait
from tests.agent.zapi_lead import Lead_
from tests.factories.agent import AgentProfileFactory
from tests.factories.campaigns import CampaignFactory
from tests.factories.channels import ChipFactory
from tests.factories.conversations import ConversationFactory, OutboundMessageFactory

pytestmark = pytest.mark.django_db

SP = ZoneInfo("America/Sao_Paulo")
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=SP)
NAME_QUESTION = "Oi! Eu sou a Júlia 😊 Qual é o seu nome?"
TEXTS = "{{primeiro_nome}}, ainda está por aí?\n---\nPosso te ajudar com o orçamento?"


@pytest.fixture
def nudging(flow_profile):
    """The chip's flow profile nudges after 4 h, at most twice."""
    AgentProfile.objects.filter(pk=flow_profile.pk).update(
        follow_up_enabled=True, follow_up_after_hours=4, follow_up_max=2, follow_up_texts=TEXTS
    )
    return flow_profile


@pytest.fixture
def lead(client, zapi_chip, run_tasks, django_capture_on_commit_callbacks):
    return Lead_(client, zapi_chip, django_capture_on_commit_callbacks)


def says(lead, text, at):
    with time_machine.travel(at):
        lead.says(text)


def tick_and_send(at):
    with time_machine.travel(at):
        report = campaigns_tick()
        outbox.outbox_drain()
    return report


def conversation():
    return Conversation.objects.get(lead__phone="+5544999999999")


def nudges():
    return Message.objects.filter(purpose=Message.Purpose.FOLLOW_UP).order_by("pk")


def sent_texts(fake_zapi):
    return [request.body["message"] for request in fake_zapi.seen("/send-text")]


def test_a_lead_who_stops_mid_flow_is_nudged_after_the_delay_up_to_the_maximum(
    admin_client, nudging, lead, fake_zapi
):
    says(lead, "Oi, queria saber o preço", MONDAY_10)
    assert sent_texts(fake_zapi) == [NAME_QUESTION]

    assert tick_and_send(MONDAY_10 + timedelta(hours=3, minutes=58))["agent_follow_ups"] == 0
    assert tick_and_send(MONDAY_10 + timedelta(hours=4, minutes=1))["agent_follow_ups"] == 1
    # The next tick, even at the same time, finds it sent: never twice.
    assert tick_and_send(MONDAY_10 + timedelta(hours=4, minutes=2))["agent_follow_ups"] == 0

    (first,) = nudges()
    assert first.status == Message.Status.SENT
    assert first.campaign_id is None
    assert first.chip_id == conversation().chip_id
    assert first.body == "Daniella, ainda está por aí?"
    assert sent_texts(fake_zapi) == [NAME_QUESTION, first.body]
    # Visible in the conversation's thread in the admin.
    page = admin_client.get(
        reverse("admin:conversations_conversation_change", args=[first.conversation_id])
    )
    assert first.body in page.content.decode()

    # The second waits 4 h after the first nudge; then the lead is left alone.
    assert tick_and_send(MONDAY_10 + timedelta(hours=8))["agent_follow_ups"] == 0
    assert tick_and_send(MONDAY_10 + timedelta(hours=8, minutes=3))["agent_follow_ups"] == 1
    assert tick_and_send(MONDAY_10 + timedelta(days=3))["agent_follow_ups"] == 0
    assert list(nudges().values_list("body", flat=True)) == [
        first.body,
        "Posso te ajudar com o orçamento?",
    ]
    assert len(fake_zapi.seen("/send-text")) == 3

    # An answer moves the flow on and starts the count again for the new question.
    says(lead, "Daniella", MONDAY_10 + timedelta(days=3, hours=1))
    assert conversation().flow_step == "tipo"
    assert tick_and_send(MONDAY_10 + timedelta(days=3, hours=5, minutes=1))["agent_follow_ups"] == 1
    assert nudges().last().body == "Daniella, ainda está por aí?"


def test_the_default_text_is_the_profiles_portuguese_one(flow_profile, lead, fake_zapi):
    AgentProfile.objects.filter(pk=flow_profile.pk).update(follow_up_enabled=True)
    profile = AgentProfile.objects.get(pk=flow_profile.pk)
    assert (profile.follow_up_after_hours, profile.follow_up_max) == (4, 1)

    says(lead, "Oi", MONDAY_10)
    tick_and_send(MONDAY_10 + timedelta(hours=4, minutes=1))

    assert sent_texts(fake_zapi)[-1] == default_follow_up_text()
    assert default_follow_up_text().startswith("Oi! Ainda está por aí?")


def test_follow_ups_are_off_by_default(flow_profile, lead, fake_zapi):
    assert flow_profile.follow_up_enabled is False
    says(lead, "Oi", MONDAY_10)

    assert tick_and_send(MONDAY_10 + timedelta(days=2))["agent_follow_ups"] == 0
    assert not nudges().exists()


def test_a_reply_restarts_the_wait(nudging, lead, fake_zapi):
    says(lead, "Oi", MONDAY_10)
    says(lead, "Daniella", MONDAY_10 + timedelta(hours=3))  # the bot asks the next question

    assert tick_and_send(MONDAY_10 + timedelta(hours=4, minutes=1))["agent_follow_ups"] == 0
    assert tick_and_send(MONDAY_10 + timedelta(hours=7, minutes=1))["agent_follow_ups"] == 1


@pytest.mark.parametrize("stop", ["opt_out", "handoff", "human", "not_interested", "flow_done"])
def test_no_nudge_after_an_opt_out_a_handoff_a_human_or_an_ended_conversation(
    nudging, lead, fake_zapi, stop
):
    says(lead, "Oi", MONDAY_10)
    at = MONDAY_10 + timedelta(hours=1)
    if stop == "opt_out":
        says(lead, "sair", at)
    elif stop == "handoff":
        says(lead, "quero falar com um atendente", at)
        assert Handoff.objects.filter(conversation=conversation()).exists()
    elif stop == "human":
        with time_machine.travel(at):
            conversation_set_owner(conversation=conversation(), owner="human", reason="SDR assumiu")
    elif stop == "not_interested":
        with time_machine.travel(at):
            conversation_set_owner(
                conversation=conversation(),
                owner="closed",
                reason="Lead sem interesse",
                actor_label="agente",
            )
    else:  # the flow ended: nothing left to ask
        for minute, answer in enumerate(("Daniella", "1", "março", "dia 15", "uns 50")):
            says(lead, answer, at + timedelta(minutes=minute))
        assert conversation().flow_step == FLOW_DONE
        Conversation.objects.filter(pk=conversation().pk).update(
            controlled_by="agent", agent_paused=False
        )
        Handoff.objects.all().delete()
    sent_before = len(fake_zapi.seen("/send-text"))

    assert tick_and_send(MONDAY_10 + timedelta(days=2))["agent_follow_ups"] == 0
    assert not nudges().exists()
    assert len(fake_zapi.seen("/send-text")) == sent_before


def test_a_nudge_due_outside_the_chip_window_waits_and_is_cancelled_by_a_reply(
    nudging, zapi_chip, lead, fake_zapi
):
    zapi_chip.send_window_start, zapi_chip.send_window_end = time(9), time(18)
    zapi_chip.time_zone = "America/Sao_Paulo"
    zapi_chip.save()
    says(lead, "Oi", MONDAY_10 + timedelta(hours=6))  # 16:00; a reply goes at any hour

    assert tick_and_send(MONDAY_10 + timedelta(hours=10, minutes=1))["agent_follow_ups"] == 1
    (nudge,) = nudges()
    assert nudge.status == Message.Status.QUEUED  # 20:01: the chip's window is closed
    assert nudge.next_attempt_at == datetime(2026, 11, 24, 9, 0, tzinfo=SP)
    assert tick_and_send(MONDAY_10 + timedelta(hours=14))["agent_follow_ups"] == 0  # in flight

    says(lead, "Daniella", MONDAY_10 + timedelta(hours=12))  # 22:00: the lead answers
    tick_and_send(datetime(2026, 11, 24, 9, 0, 30, tzinfo=SP))

    nudge.refresh_from_db()
    assert nudge.status == Message.Status.CANCELLED
    assert nudge.last_error == "O lead respondeu: follow-up cancelado"
    assert nudge.body not in sent_texts(fake_zapi)


def test_a_nudge_held_by_the_window_goes_when_it_opens(nudging, zapi_chip, lead, fake_zapi):
    zapi_chip.send_window_start, zapi_chip.send_window_end = time(9), time(18)
    zapi_chip.save()
    says(lead, "Oi", MONDAY_10 + timedelta(hours=6))
    tick_and_send(MONDAY_10 + timedelta(hours=10, minutes=1))
    tick_and_send(datetime(2026, 11, 24, 8, 59, tzinfo=SP))
    (nudge,) = nudges()
    assert nudge.status == Message.Status.QUEUED

    tick_and_send(datetime(2026, 11, 24, 9, 0, 30, tzinfo=SP))

    nudge.refresh_from_db()
    assert nudge.status == Message.Status.SENT
    assert nudge.sent_at.astimezone(SP).time() >= time(9)
    assert sent_texts(fake_zapi)[-1] == nudge.body


def test_a_handoff_while_the_nudge_waits_cancels_it(nudging, zapi_chip, lead, fake_zapi):
    zapi_chip.send_window_start, zapi_chip.send_window_end = time(9), time(18)
    zapi_chip.save()
    says(lead, "Oi", MONDAY_10 + timedelta(hours=6))
    tick_and_send(MONDAY_10 + timedelta(hours=10, minutes=1))
    with time_machine.travel(MONDAY_10 + timedelta(hours=11)):
        conversation_set_owner(
            conversation=conversation(),
            owner="human",
            reason="SDR assumiu",
            handoff_reason=Handoff.Reason.OPS,
        )
        conversation_set_owner(conversation=conversation(), owner="agent", reason="Devolvida")
        Handoff.objects.create(conversation=conversation(), reason=Handoff.Reason.AGENT_DECISION)

    tick_and_send(datetime(2026, 11, 24, 9, 0, 30, tzinfo=SP))

    (nudge,) = nudges()
    assert nudge.status == Message.Status.CANCELLED
    assert nudge.last_error == "Conversa com um humano: follow-up cancelado"


def test_a_chip_that_may_not_follow_up_holds_the_nudge(nudging, zapi_chip, lead, fake_zapi):
    says(lead, "Oi", MONDAY_10)
    zapi_chip.can_follow_up = False
    zapi_chip.save()

    tick_and_send(MONDAY_10 + timedelta(hours=4, minutes=1))

    (nudge,) = nudges()
    assert nudge.status == Message.Status.QUEUED
    assert nudge.last_error == "Chip sem permissão para follow-up"
    assert sent_texts(fake_zapi) == [NAME_QUESTION]


def test_the_profile_of_the_conversation_decides_not_the_chips(nudging, lead, fake_zapi):
    says(lead, "Oi", MONDAY_10)
    quiet = AgentProfileFactory(flow=nudging.flow)  # follow-ups off
    Conversation.objects.filter(pk=conversation().pk).update(agent_profile=quiet)

    assert tick_and_send(MONDAY_10 + timedelta(days=1))["agent_follow_ups"] == 0


def test_profile_id_expression_agrees_with_profile_for():
    own, from_campaign, from_chip = (AgentProfileFactory() for _ in range(3))
    inactive = AgentProfileFactory(is_active=False)
    chip = ChipFactory(agent_profile=from_chip)
    campaign = CampaignFactory(agent_profile=from_campaign)
    cases = [
        ConversationFactory(chip=chip, agent_profile=own),
        ConversationFactory(chip=chip, agent_profile=inactive),
        ConversationFactory(chip=chip),
        ConversationFactory(chip=ChipFactory()),
        ConversationFactory(chip=ChipFactory(agent_profile=inactive)),
    ]
    with_campaign = ConversationFactory(chip=chip)
    OutboundMessageFactory(conversation=with_campaign, chip=chip, campaign=campaign)
    cases.append(with_campaign)

    annotated = dict(
        Conversation.objects.annotate(profile_id=profile_id_expression()).values_list(
            "pk", "profile_id"
        )
    )
    expected = {c.pk: getattr(profile_for(conversation=c), "pk", None) for c in cases}
    assert annotated == expected
    assert set(expected.values()) == {own.pk, from_campaign.pk, from_chip.pk, None}


def test_a_manager_sets_the_follow_up_rules_in_the_admin(client, django_user_model, flow_profile):
    from django.contrib.auth.models import Group

    def logged_in(role):
        user = django_user_model.objects.create_user(f"{role}-u", password="pw", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        return client

    url = reverse("admin:agent_agentprofile_change", args=[flow_profile.pk])
    form = {
        "name": flow_profile.name,
        "persona": flow_profile.persona,
        "system_prompt": flow_profile.system_prompt,
        "temperature": "0.4",
        "history_window": "20",
        "fallback_reply": flow_profile.fallback_reply,
        "handoff_on_failure": "on",
        "handoff_reply": flow_profile.handoff_reply,
        "handoff_keywords": '["humano"]',
        "opt_out_keywords": '["sair"]',
        "opt_out_confirmation": flow_profile.opt_out_confirmation,
        "flow": flow_profile.flow_id,
        "on_flow_end": flow_profile.on_flow_end,
        "closing_message": flow_profile.closing_message,
        "is_active": "on",
        "follow_up_enabled": "on",
        "follow_up_after_hours": "6",
        "follow_up_max": "3",
        "follow_up_texts": "Oi, {{primeiro_nome}}!\n---\nSigo por aqui.",
    }

    assert logged_in("ops").post(url, form).status_code == 403
    flow_profile.refresh_from_db()
    assert flow_profile.follow_up_enabled is False

    manager = logged_in("manager")
    page = manager.get(url).content.decode()
    assert "Follow-up do fluxo" in page
    assert manager.post(url, {**form, "follow_up_after_hours": "0"}).status_code == 200  # error
    response = manager.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    flow_profile.refresh_from_db()
    assert (
        flow_profile.follow_up_enabled,
        flow_profile.follow_up_after_hours,
        flow_profile.follow_up_max,
    ) == (True, 6, 3)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_ticks_at_once_queue_one_nudge():
    """A tick still inside its transaction holds the conversation: the other skips it."""
    import threading

    from django.db import connection, transaction

    from campaigns.followups import agent_follow_ups_send

    profile = AgentProfileFactory(follow_up_enabled=True, follow_up_after_hours=4)
    asked = timezone.now() - timedelta(hours=5)
    waiting = ConversationFactory(
        chip=ChipFactory(agent_profile=profile),
        flow_step="nome",
        last_inbound_at=asked - timedelta(minutes=1),
        last_outbound_at=asked,
    )
    queued_not_committed, other_tick_done = threading.Event(), threading.Event()
    counts = {}

    def first_tick():
        try:
            with transaction.atomic():
                counts["first"] = agent_follow_ups_send(profile=profile)
                queued_not_committed.set()
                assert other_tick_done.wait(30)
        finally:
            connection.close()

    def second_tick():
        try:
            assert queued_not_committed.wait(30)
            counts["second"] = agent_follow_ups_send(profile=profile)
        finally:
            other_tick_done.set()
            connection.close()

    threads = [threading.Thread(target=first_tick), threading.Thread(target=second_tick)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert counts == {"first": 1, "second": 0}
    assert agent_follow_ups_send(profile=profile) == 0  # now it sees the nudge in flight
    assert Message.objects.filter(conversation=waiting, purpose="follow_up").count() == 1
