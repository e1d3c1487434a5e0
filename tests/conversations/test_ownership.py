"""One owner at a time: the owner actions as each role posts them, the history, the timings.

Everything goes through the admin's changelist actions and the SDR's chat
page, the way a user clicks; the outbox is the real one, sending to the local
fake provider.
"""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from conversations import outbox
from conversations.models import Conversation, Handoff, Message, OwnerChange
from conversations.tasks import handoff_sweep
from core.models import AuditEntry, MetricCounter
from tests.factories.conversations import (
    ConversationFactory,
    HandoffFactory,
    InboundMessageFactory,
    OutboundMessageFactory,
)

pytestmark = pytest.mark.django_db

Owner = Conversation.ControlledBy
CHANGELIST = reverse("admin:conversations_conversation_changelist")


def post_action(client, action, conversations):
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [c.pk for c in conversations]},
        follow=True,
    )


def chat_url(conversation):
    return reverse("admin:conversations_conversation_chat", args=[conversation.pk])


def histogram_count(name):
    return sum(
        row.value for row in MetricCounter.objects.filter(name=name).exclude(labels__contains="sum")
    )


@pytest.mark.parametrize("role", ["sdr", "ops"])
def test_take_over_then_give_back_is_timed_and_recorded(role_client, role, django_user_model):
    conversation = ConversationFactory()
    requested = timezone.now() - timedelta(minutes=3)
    handoff = HandoffFactory(conversation=conversation)
    Handoff.objects.filter(pk=handoff.pk).update(created_at=requested)
    client = role_client(role)

    response = post_action(client, "take_over", [conversation])

    assert response.status_code == 200
    conversation.refresh_from_db()
    handoff.refresh_from_db()
    user = django_user_model.objects.get(username=f"{role}-user")
    assert (conversation.controlled_by, conversation.owner_changed_by) == (Owner.HUMAN, user)
    assert conversation.agent_paused
    assert (handoff.status, handoff.assigned_to) == (Handoff.Status.ACCEPTED, user)
    assert handoff.accepted_at - requested >= timedelta(minutes=3)
    assert histogram_count("handoff_pickup_seconds") == 1

    post_action(client, "give_back", [conversation])

    conversation.refresh_from_db()
    handoff.refresh_from_db()
    assert conversation.controlled_by == Owner.AGENT
    assert not conversation.agent_paused
    assert handoff.status == Handoff.Status.RESOLVED
    assert handoff.resolved_at
    assert histogram_count("handoff_resolution_seconds") == 1
    history = list(
        conversation.owner_changes.order_by("created_at", "id").values_list(
            "previous", "owner", "actor_label"
        )
    )
    assert history == [
        (Owner.AGENT, Owner.HUMAN, f"{role}-user"),
        (Owner.HUMAN, Owner.AGENT, f"{role}-user"),
    ]
    assert list(
        AuditEntry.objects.order_by("at").values_list("action", "actor__username", "object_ids")
    ) == [
        ("conversation_take_over", f"{role}-user", [str(conversation.pk)]),
        ("conversation_give_back", f"{role}-user", [str(conversation.pk)]),
    ]


def test_taking_over_without_a_handoff_opens_one_counted_as_sdr(role_client):
    conversation = ConversationFactory()

    post_action(role_client("sdr"), "take_over", [conversation])

    handoff = Handoff.objects.get(conversation=conversation)
    assert (handoff.reason, handoff.status) == (Handoff.Reason.SDR, Handoff.Status.ACCEPTED)
    assert MetricCounter.objects.get(name="handoffs_total", labels__contains="sdr").value == 1


def test_pause_and_close_are_owners_too(role_client):
    paused, closed = ConversationFactory(), ConversationFactory()
    client = role_client("ops")

    post_action(client, "pause_agent", [paused])
    post_action(client, "close", [closed])
    response = post_action(client, "take_over", [closed])

    paused.refresh_from_db()
    closed.refresh_from_db()
    assert (paused.controlled_by, paused.agent_paused) == (Owner.PAUSED, True)
    assert (closed.controlled_by, closed.status) == (Owner.CLOSED, Conversation.Status.CLOSED)
    assert closed.closed_at is not None
    assert "0 conversa(s) alterada(s); 1 já encerrada(s)" in str(
        next(iter(response.context["messages"]))
    )


@pytest.mark.parametrize("role", ["manager", "staff"])
def test_who_may_only_look_cannot_change_the_owner(role_client, role):
    conversation = ConversationFactory()
    client = role_client(role)

    for action in ("take_over", "give_back", "pause_agent", "close"):
        post_action(client, action, [conversation])
    reply = client.post(chat_url(conversation), {"action": "reply", "body": "Oi"})
    click = client.post(chat_url(conversation), {"action": "take_over"})

    conversation.refresh_from_db()
    assert conversation.controlled_by == Owner.AGENT
    assert (reply.status_code, click.status_code) == (403, 403)
    assert not OwnerChange.objects.exists()
    assert not Message.objects.exists()


def test_the_outbox_cancels_an_agent_reply_queued_before_the_takeover(
    role_client, provider_chip, fake_provider
):
    conversation = ConversationFactory(chip=provider_chip())
    reply = OutboundMessageFactory(conversation=conversation, body="resposta do agente")

    post_action(role_client("sdr"), "take_over", [conversation])
    outbox.outbox_drain(max_seconds=0)

    reply.refresh_from_db()
    assert reply.status == Message.Status.CANCELLED
    assert "humano" in reply.last_error
    assert fake_provider.requests == []


def test_the_owner_shows_on_the_conversation_page_and_filters_the_list(superuser_client):
    human = ConversationFactory()
    agent = ConversationFactory()
    post_action(superuser_client, "take_over", [human])

    page = superuser_client.get(
        reverse("admin:conversations_conversation_change", args=[human.pk])
    ).content.decode()
    listing = superuser_client.get(CHANGELIST, {"controlled_by__exact": "human"})

    assert "Humano (SDR)" in page
    assert "SDR assumiu" in page
    assert "root" in page
    assert [c.pk for c in listing.context["cl"].result_list] == [human.pk]
    assert agent.pk not in [c.pk for c in listing.context["cl"].result_list]


def test_a_quiet_human_takeover_returns_to_the_agent_and_messages_extend_it(settings, role_client):
    settings.HUMAN_TAKEOVER_QUIET_MINUTES = 30
    quiet, busy = ConversationFactory(), ConversationFactory()
    client = role_client("sdr")
    post_action(client, "take_over", [quiet, busy])

    with time_machine.travel(timezone.now() + timedelta(minutes=20)):
        client.post(chat_url(busy), {"action": "reply", "body": "Ainda estou aqui"})
    with time_machine.travel(timezone.now() + timedelta(minutes=31)):
        assert handoff_sweep()["expired"] == 1

    quiet.refresh_from_db()
    busy.refresh_from_db()
    assert quiet.controlled_by == Owner.AGENT
    assert quiet.owner_changes.first().actor_label == "expiração"
    assert busy.controlled_by == Owner.HUMAN
    assert Handoff.objects.get(conversation=quiet).status == Handoff.Status.RESOLVED


def test_without_the_setting_a_takeover_never_expires(role_client):
    conversation = ConversationFactory()
    post_action(role_client("sdr"), "take_over", [conversation])

    with time_machine.travel(timezone.now() + timedelta(days=3)):
        assert handoff_sweep()["expired"] == 0

    conversation.refresh_from_db()
    assert conversation.controlled_by == Owner.HUMAN
    assert conversation.human_until is None


def test_the_chat_page_shows_who_wrote_each_message(role_client, django_user_model):
    conversation = ConversationFactory(lead__name="Daniella")
    InboundMessageFactory(conversation=conversation, body="Quero um orçamento")
    OutboundMessageFactory(conversation=conversation, body="Claro! Para quando?")
    sdr = django_user_model.objects.create_user(username="carla", is_staff=True)
    OutboundMessageFactory(
        conversation=conversation, purpose=Message.Purpose.HUMAN, sent_by=sdr, body="Sou a Carla"
    )

    page = role_client("manager").get(chat_url(conversation)).content.decode()

    lead_at = page.index("Daniella</span>Quero um orçamento")
    agent_at = page.index("Agente</span>Claro! Para quando?")
    sdr_at = page.index("SDR (carla)</span>Sou a Carla")
    assert lead_at < agent_at < sdr_at
    # A manager sees, but gets no reply box and no buttons.
    assert 'id="chat-reply"' not in page
    assert "Assumir" not in page


def test_an_sdr_replies_from_the_chat_page_through_the_outbox(
    role_client, provider_chip, fake_provider, django_user_model
):
    conversation = ConversationFactory(chip=provider_chip(), lead__phone="+5511999990042")
    client = role_client("sdr")

    response = client.post(chat_url(conversation), {"action": "reply", "body": "Oi, sou a SDR"})
    outbox.outbox_drain(max_seconds=0)

    assert response.status_code == 302
    message = Message.objects.get(conversation=conversation)
    sdr = django_user_model.objects.get(username="sdr-user")
    assert (message.purpose, message.sent_by, message.status) == (
        Message.Purpose.HUMAN,
        sdr,
        Message.Status.SENT,
    )
    [sent] = fake_provider.requests
    assert "Oi, sou a SDR" in str(sent.body)
    conversation.refresh_from_db()
    assert conversation.controlled_by == Owner.HUMAN
    entry = AuditEntry.objects.get(action="conversation_reply")
    assert entry.detail == {"message_id": message.pk}


@pytest.mark.parametrize("body", ["", "   ", "x" * 4097])
def test_an_empty_or_huge_reply_is_refused_and_nothing_is_queued(role_client, body):
    conversation = ConversationFactory()

    response = role_client("ops").post(
        chat_url(conversation), {"action": "reply", "body": body}, follow=True
    )

    assert response.status_code == 200
    assert "Escreva uma mensagem" in response.content.decode()
    assert not Message.objects.exists()


def test_the_queue_lists_nobodys_first_then_mine_oldest_first(role_client, role_user):
    client = role_client("sdr")
    other = role_user("ops")
    now = timezone.now()

    def handoff(minutes_ago, **kwargs):
        made = HandoffFactory(**kwargs)
        Handoff.objects.filter(pk=made.pk).update(created_at=now - timedelta(minutes=minutes_ago))
        return made

    others = handoff(50, status=Handoff.Status.ACCEPTED, assigned_to=other)
    mine = handoff(5, status=Handoff.Status.ACCEPTED)
    Handoff.objects.filter(pk=mine.pk).update(assigned_to=client.session["_auth_user_id"])
    newest_open = handoff(1)
    oldest_open = handoff(30)
    handoff(90, status=Handoff.Status.RESOLVED)

    response = client.get(reverse("admin:conversations_queue"))

    assert [h.pk for h in response.context["handoffs"]] == [
        oldest_open.pk,
        newest_open.pk,
        mine.pk,
        others.pk,
    ]
    assert chat_url(oldest_open.conversation) in response.content.decode()


def test_the_handoff_form_cannot_move_a_handoff_past_the_owner_service(role_client):
    handoff = HandoffFactory()
    client = role_client("sdr")
    change = reverse("admin:conversations_handoff_change", args=[handoff.pk])

    response = client.post(
        change, {"status": "resolved", "assigned_to": "1", "note": "ligar amanhã"}
    )
    add = client.get(reverse("admin:conversations_handoff_add"))

    handoff.refresh_from_db()
    assert response.status_code == 302
    assert (handoff.status, handoff.note) == (Handoff.Status.OPEN, "ligar amanhã")
    assert handoff.assigned_to is None
    assert add.status_code == 403
