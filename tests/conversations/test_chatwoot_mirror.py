"""Mirroring into Chatwoot: exactly once, in order, echoes ignored, labels in sync.

The lead's messages arrive through the real Evolution webhook (its real
payload), ours leave through the real outbox to the local fake provider, the
SDR's Chatwoot events come in through /webhooks/chatwoot/ with Chatwoot's
real payloads, and Chatwoot's Application API is mocked at the HTTP transport
(respx, tests/support/fake_chatwoot.py). The sweep task is called the way the
scheduler calls it.
"""

import copy
import json
import re
from datetime import timedelta

import httpx
import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone
from django_q.conf import Conf

from conversations import outbox, tasks
from conversations.chatwoot_mirror import MIRROR_MARKER, chatwoot_mirror_retry
from conversations.handoffs import handoff_open
from conversations.models import ChatwootMirror, Conversation, Handoff, Message
from conversations.ownership import conversation_set_owner
from core.models import AuditEntry
from tests.channels.webhooks import deliver, load_fixture_json
from tests.conversations.chatwoot import TOKEN, agent_message, labels_changed, post_chatwoot

pytestmark = pytest.mark.django_db

LEAD_PHONE = "+59170000001"  # the Evolution fixture's sender
State = ChatwootMirror.State


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.CHATWOOT_WEBHOOK_TOKEN = TOKEN
    settings.CHATWOOT_WEBHOOK_SECRET = ""


@pytest.fixture
def chip(provider_chip):
    return provider_chip(instance_id="tigo1")


@pytest.fixture
def lead_says(client, chip, django_capture_on_commit_callbacks):
    sent = [0]

    def says(text: str, *, jid: str = "") -> Message:
        payload = copy.deepcopy(load_fixture_json("evolution", "messages_upsert__text_incoming_v1"))
        if jid:
            payload["data"]["key"]["remoteJid"] = jid
        sent[0] += 1
        payload["data"]["key"]["id"] = f"3EB0{sent[0]:018d}"
        payload["data"]["message"]["conversation"] = text
        deliver(client, chip, payload, django_capture_on_commit_callbacks)
        return Message.objects.get(provider_message_id=payload["data"]["key"]["id"])

    return says


def we_reply(conversation: Conversation, text: str) -> Message:
    message = outbox.outbox_enqueue(
        conversation=conversation, body=text, purpose=Message.Purpose.REPLY
    )
    outbox.outbox_drain(max_seconds=0)
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    return message


def later(seconds: float):
    return time_machine.travel(timezone.now() + timedelta(seconds=seconds), tick=True)


def test_nothing_is_queued_while_chatwoot_is_not_configured(lead_says):
    lead_says("Oi")

    assert not ChatwootMirror.objects.exists()
    assert tasks.chatwoot_mirror_sweep() == {"mirrored": 0, "failed": 0, "retried": 0}


def test_the_lead_and_our_replies_are_written_as_chatwoots_api_expects(
    lead_says, fake_chatwoot, fake_provider
):
    inbound = lead_says("Oi, quanto custa?")
    reply = we_reply(inbound.conversation, "Olá! Depende do evento.")

    assert tasks.chatwoot_mirror_sweep()["mirrored"] == 2

    search, create_contact, conversations, create_conversation, *posts = fake_chatwoot.requests
    assert search.url.params["q"] == LEAD_PHONE
    assert json.loads(create_contact.content) == {
        "inbox_id": 7,
        "name": "Contato Exemplo",
        "phone_number": LEAD_PHONE,
        "identifier": f"sdr-ops-lead-{inbound.conversation.lead_id}",
    }
    assert conversations.method == "GET"
    source_id = fake_chatwoot.contacts[101]["contact_inboxes"][0]["source_id"]
    assert json.loads(create_conversation.content) == {
        "source_id": source_id,
        "inbox_id": 7,
        "contact_id": 101,
    }
    bodies = [json.loads(post.content) for post in posts]
    assert bodies == [
        {
            "content": "Oi, quanto custa?",
            "message_type": "incoming",
            "private": False,
            "content_attributes": {MIRROR_MARKER: inbound.pk, "sdr_ops_author": "lead"},
            "source_id": f"sdr-ops:{inbound.pk}",
        },
        {
            "content": "Olá! Depende do evento.",
            "message_type": "outgoing",
            "private": False,
            "content_attributes": {MIRROR_MARKER: reply.pk, "sdr_ops_author": "agent"},
            "source_id": f"sdr-ops:{reply.pk}",
        },
    ]
    assert all(r.headers["api_access_token"] == "chatwoot-api-token-for-tests" for r in posts)
    remote = dict(ChatwootMirror.objects.values_list("message_id", "remote_id"))
    assert remote == {
        m.pk: str(p["id"]) for m, p in zip([inbound, reply], fake_chatwoot.posted(), strict=True)
    }


def test_an_agent_bot_id_posts_the_agents_replies_as_the_bot(
    lead_says, fake_chatwoot, fake_provider, settings
):
    settings.CHATWOOT_AGENT_BOT_ID = "12"
    inbound = lead_says("Oi")
    we_reply(inbound.conversation, "Olá!")

    tasks.chatwoot_mirror_sweep()

    lead_post, reply_post = (
        json.loads(r.content) for r in fake_chatwoot.requests if r.url.path.endswith("/messages")
    )
    assert "sender_type" not in lead_post
    assert (reply_post["sender_type"], reply_post["sender_id"]) == ("AgentBot", 12)


@pytest.mark.parametrize("keeps_marker", [True, False], ids=["recent", "older-chatwoot"])
def test_an_answer_lost_after_chatwoot_stored_the_message_is_not_posted_again(
    lead_says, fake_chatwoot, keeps_marker
):
    fake_chatwoot.drop_marker = not keeps_marker
    inbound = lead_says("Oi")
    fake_chatwoot.fault = fake_chatwoot.answer_lost("POST", r"/messages$")

    assert tasks.chatwoot_mirror_sweep() == {"mirrored": 0, "failed": 0, "retried": 1}
    row = ChatwootMirror.objects.get()
    assert (row.state, row.uncertain, row.attempts) == (State.PENDING, True, 1)
    assert len(fake_chatwoot.posted()) == 1  # Chatwoot has it; we do not know yet

    with later(11):
        assert tasks.chatwoot_mirror_sweep()["mirrored"] == 1

    [posted] = fake_chatwoot.posted()
    row.refresh_from_db()
    assert (row.state, row.remote_id) == (State.DONE, str(posted["id"]))
    assert posted["content"] == inbound.body
    assert fake_chatwoot.calls("GET", r"/conversations/\d+/messages$") == 1


def test_a_contact_or_conversation_created_before_a_lost_answer_is_found_not_made_twice(
    lead_says, fake_chatwoot
):
    lead_says("Oi")
    fake_chatwoot.fault = fake_chatwoot.answer_lost("POST", r"/contacts$")
    tasks.chatwoot_mirror_sweep()
    fake_chatwoot.fault = fake_chatwoot.answer_lost("POST", r"/conversations$")
    with later(11):
        tasks.chatwoot_mirror_sweep()
    fake_chatwoot.fault = None
    with later(40):
        assert tasks.chatwoot_mirror_sweep()["mirrored"] == 1

    assert len(fake_chatwoot.contacts) == 1
    assert len(fake_chatwoot.conversations) == 1
    assert len(fake_chatwoot.posted()) == 1


def test_an_existing_contact_and_its_open_conversation_are_used(lead_says, fake_chatwoot, client):
    # The contact and the conversation exist already (made by an earlier mirror, or by hand).
    fake_chatwoot.fault = fake_chatwoot.refuse("POST", r"/messages$", 503)
    lead_says("Oi")
    tasks.chatwoot_mirror_sweep()
    Conversation.objects.update(external_id="")
    fake_chatwoot.fault = None

    with later(11):
        assert tasks.chatwoot_mirror_sweep()["mirrored"] == 1

    assert len(fake_chatwoot.contacts) == 1
    assert len(fake_chatwoot.conversations) == 1
    assert fake_chatwoot.calls("POST", r"/contacts$") == 1
    assert fake_chatwoot.calls("POST", r"/conversations$") == 1


def test_a_message_chatwoot_refuses_for_good_fails_and_the_next_ones_go_on(
    lead_says, fake_chatwoot
):
    lead_says("primeira")
    lead_says("segunda")
    fake_chatwoot.fault = fake_chatwoot.refuse("POST", r"/messages$", 422)

    assert tasks.chatwoot_mirror_sweep() == {"mirrored": 1, "failed": 1, "retried": 0}

    first, second = ChatwootMirror.objects.order_by("id")
    assert first.state == State.FAILED
    assert "HTTP 422" in first.last_error
    assert second.state == State.DONE
    assert [m["content"] for m in fake_chatwoot.posted()] == ["segunda"]


def test_a_conversation_deleted_in_chatwoot_is_linked_again(lead_says, fake_chatwoot):
    inbound = lead_says("Oi")
    Conversation.objects.filter(pk=inbound.conversation_id).update(external_id="999")

    assert tasks.chatwoot_mirror_sweep()["retried"] == 1
    assert Conversation.objects.get(pk=inbound.conversation_id).external_id == ""
    with later(11):
        assert tasks.chatwoot_mirror_sweep()["mirrored"] == 1

    [chatwoot_id] = fake_chatwoot.conversations
    assert Conversation.objects.get(pk=inbound.conversation_id).external_id == str(chatwoot_id)


def test_our_mirrored_reply_echoed_by_the_webhook_is_not_sent_to_the_lead_again(
    lead_says, fake_chatwoot, fake_provider, client
):
    fake_chatwoot.drop_marker = True  # older Chatwoot: only its id tells it is ours
    inbound = lead_says("Oi")
    reply = we_reply(inbound.conversation, "Olá! Sou a Júlia.")
    tasks.chatwoot_mirror_sweep()
    [chatwoot_id] = fake_chatwoot.conversations
    echo_id = ChatwootMirror.objects.get(message=reply).remote_id

    echo = agent_message(chatwoot_id, "Olá! Sou a Júlia.", message_id=int(echo_id))
    echo["content_attributes"] = {}
    response = post_chatwoot(client, echo)
    outbox.outbox_drain(max_seconds=0)

    assert response.json()["outcome"] == "own_mirror"
    assert len(fake_provider.requests) == 1
    assert Message.objects.filter(direction="out").count() == 1
    assert Conversation.objects.get().controlled_by == Conversation.ControlledBy.AGENT


def test_an_echo_that_arrives_before_chatwoot_answered_us_is_ignored_too(
    lead_says, fake_chatwoot, fake_provider, client
):
    fake_chatwoot.drop_marker = True
    inbound = lead_says("Oi")
    tasks.chatwoot_mirror_sweep()
    [chatwoot_id] = fake_chatwoot.conversations
    outcomes = []

    def webhook_first(request):
        # Chatwoot's webhook job runs before its API answer reaches us.
        if request.method == "POST" and request.url.path.endswith("/messages"):
            fake_chatwoot.fault = None
            answer = fake_chatwoot._route(request)
            echo = agent_message(chatwoot_id, "Tudo bem?", message_id=answer.json()["id"])
            echo["content_attributes"] = {}
            outcomes.append(post_chatwoot(client, echo).json()["outcome"])
            return answer
        return None

    we_reply(inbound.conversation, "Tudo bem?")
    fake_chatwoot.fault = webhook_first
    tasks.chatwoot_mirror_sweep()
    outbox.outbox_drain(max_seconds=0)

    assert outcomes == ["own_mirror"]
    assert len(fake_provider.requests) == 1


def test_an_sdrs_message_written_in_chatwoot_is_not_mirrored_back(
    lead_says, fake_chatwoot, fake_provider, client
):
    inbound = lead_says("Oi")
    tasks.chatwoot_mirror_sweep()
    [chatwoot_id] = fake_chatwoot.conversations

    response = post_chatwoot(client, agent_message(chatwoot_id, "Oi, aqui é a Carla", message_id=5))
    outbox.outbox_drain(max_seconds=0)
    tasks.chatwoot_mirror_sweep()

    assert response.json()["outcome"] == "human_reply"
    human = Message.objects.get(purpose=Message.Purpose.HUMAN)
    assert human.status == Message.Status.SENT
    assert human.chatwoot_mirror.remote_id == "5"
    assert [m["content"] for m in fake_chatwoot.posted()] == [inbound.body]


def test_the_handoff_label_follows_the_handoff_and_keeps_the_other_labels(
    lead_says, fake_chatwoot, client, django_capture_on_commit_callbacks
):
    inbound = lead_says("Oi")
    conversation = inbound.conversation
    tasks.chatwoot_mirror_sweep()
    [(chatwoot_id, chatwoot_conversation)] = fake_chatwoot.conversations.items()
    chatwoot_conversation["labels"] = ["vip"]  # an SDR's own label

    with django_capture_on_commit_callbacks(execute=True):
        handoff_open(conversation=conversation, reason=Handoff.Reason.LEAD_REQUEST)
    tasks.chatwoot_mirror_sweep()
    assert chatwoot_conversation["labels"] == ["vip", "humano"]

    # The webhook's echo of our own change opens nothing new.
    echo = labels_changed(chatwoot_id, ["vip"], ["vip", "humano"])
    assert post_chatwoot(client, echo).json()["outcome"] == "own_labels"

    with django_capture_on_commit_callbacks(execute=True):
        conversation_set_owner(
            conversation=conversation, owner=Conversation.ControlledBy.AGENT, reason="devolvida"
        )
    tasks.chatwoot_mirror_sweep()
    assert chatwoot_conversation["labels"] == ["vip"]
    # Our add's echo arriving late, after the handoff was resolved, does not reopen it.
    assert post_chatwoot(client, echo).json()["outcome"] == "own_labels"
    assert not Handoff.objects.filter(status__in=["open", "accepted"]).exists()
    # An SDR's change in Chatwoot is still theirs to make.
    sdr_adds = labels_changed(chatwoot_id, ["vip"], ["vip", "humano", "urgente"])
    assert post_chatwoot(client, sdr_adds).json()["outcome"] == "handoff_opened"
    assert ChatwootMirror.objects.filter(kind="labels").count() >= 2


def test_while_chatwoot_fails_nothing_else_calls_it_before_the_retry_time(
    lead_says, fake_chatwoot, fake_provider
):
    inbound = lead_says("um")
    fake_chatwoot.fault = fake_chatwoot.refuse("POST", r"/messages$", 500)
    tasks.chatwoot_mirror_sweep()
    calls = len(fake_chatwoot.requests)
    we_reply(inbound.conversation, "dois")
    lead_says("três")
    lead_says("outro lead", jid="5511988887777@s.whatsapp.net")

    # Another conversation's write is due, but Chatwoot is backing off: no call at all.
    assert tasks.chatwoot_mirror_sweep() == {"mirrored": 0, "failed": 0, "retried": 0}
    assert len(fake_chatwoot.requests) == calls
    with later(11):
        assert tasks.chatwoot_mirror_sweep()["mirrored"] == 4

    [first, other] = fake_chatwoot.conversations
    assert [m["content"] for m in fake_chatwoot.posted(first)] == ["um", "dois", "três"]
    assert [m["content"] for m in fake_chatwoot.posted(other)] == ["outro lead"]


def test_a_worker_killed_mid_write_leaves_a_write_that_is_checked_not_repeated(
    lead_says, fake_chatwoot
):
    lead_says("Oi")

    def killed_after_chatwoot_stored_it(request):
        if request.method == "POST" and request.url.path.endswith("/messages"):
            fake_chatwoot._route(request)
            raise SystemExit("worker killed")  # django-q2's timeout and a SIGTERM look alike
        return None

    fake_chatwoot.fault = killed_after_chatwoot_stored_it
    with pytest.raises(SystemExit):
        tasks.chatwoot_mirror_sweep()
    fake_chatwoot.fault = None
    row = ChatwootMirror.objects.get()
    assert row.state == State.SENDING

    # Nobody touches it while its lease runs; then it is taken back and checked first.
    assert tasks.chatwoot_mirror_sweep()["mirrored"] == 0
    with later(60):
        assert tasks.chatwoot_mirror_sweep()["mirrored"] == 1

    [posted] = fake_chatwoot.posted()
    row.refresh_from_db()
    assert (row.state, row.remote_id, row.attempts) == (State.DONE, str(posted["id"]), 2)


def test_a_wrong_token_loses_nothing_once_it_is_fixed(lead_says, fake_chatwoot, settings):
    settings.CHATWOOT_API_TOKEN = "revoked-token"
    lead_says("Oi")

    assert tasks.chatwoot_mirror_sweep() == {"mirrored": 0, "failed": 0, "retried": 1}
    assert "HTTP 401" in ChatwootMirror.objects.get().last_error

    settings.CHATWOOT_API_TOKEN = "chatwoot-api-token-for-tests"
    with later(11):
        assert tasks.chatwoot_mirror_sweep()["mirrored"] == 1
    assert len(fake_chatwoot.posted()) == 1


def test_one_write_chatwoot_keeps_failing_holds_the_others_up_one_window_only(
    lead_says, fake_chatwoot
):
    def poison(request):
        if request.method == "POST" and b"veneno" in request.content:
            return httpx.Response(500, json={"error": "Internal Server Error"})
        return None

    fake_chatwoot.fault = poison
    lead_says("veneno", jid="5511911110000@s.whatsapp.net")
    assert tasks.chatwoot_mirror_sweep()["retried"] == 1
    lead_says("oi")
    # Chatwoot just failed: the first window holds everyone.
    assert tasks.chatwoot_mirror_sweep() == {"mirrored": 0, "failed": 0, "retried": 0}

    with later(11):
        # The other conversation goes first and closes the breaker; the poisoned one fails again.
        assert tasks.chatwoot_mirror_sweep() == {"mirrored": 1, "failed": 0, "retried": 1}
    lead_says("tudo bem?")
    with later(25):
        # Past the breaker's window, before the poisoned write's own retry: the others flow.
        assert tasks.chatwoot_mirror_sweep() == {"mirrored": 1, "failed": 0, "retried": 0}

    assert [m["content"] for m in fake_chatwoot.posted()] == ["oi", "tudo bem?"]
    assert ChatwootMirror.objects.get(message__body="veneno").attempts == 2


# --- Ops sending refused writes again (conversations.chatwoot_mirror.chatwoot_mirror_retry) ----


def resend(client, messages):
    return client.post(
        reverse("admin:conversations_message_changelist"),
        {"action": "chatwoot_retry", "_selected_action": [m.pk for m in messages]},
        follow=True,
    )


def refused_once(lead_says, fake_chatwoot, text: str) -> Message:
    fake_chatwoot.fault = fake_chatwoot.refuse("POST", r"/messages$", 422)
    message = lead_says(text)
    assert tasks.chatwoot_mirror_sweep() == {"mirrored": 0, "failed": 1, "retried": 0}
    return message


def test_ops_send_a_refused_message_to_chatwoot_again_and_it_is_written_once(
    lead_says, fake_chatwoot, role_client, django_capture_on_commit_callbacks, monkeypatch
):
    refused = refused_once(lead_says, fake_chatwoot, "primeira")
    mirrored = lead_says("segunda")
    assert tasks.chatwoot_mirror_sweep()["mirrored"] == 1
    client = role_client("ops")

    with django_capture_on_commit_callbacks(execute=False) as kicks:
        response = resend(client, [refused, mirrored])

    assert [str(m) for m in response.context["messages"]] == [
        "1 mensagem(ns) de volta à fila do Chatwoot; 1 ignorada(s) (o Chatwoot não as recusou)."
    ]
    row = ChatwootMirror.objects.get(message=refused)
    assert (row.state, row.attempts) == (State.PENDING, 0)
    assert row.next_attempt_at <= timezone.now()
    assert "HTTP 422" in row.last_error  # why it failed, until the next try says otherwise
    entry = AuditEntry.objects.get(action="chatwoot_mirror_retry")
    assert entry.actor.username == "ops-user"
    assert entry.source == AuditEntry.Source.ADMIN
    assert entry.object_ids == [str(row.pk)]
    assert entry.detail["skipped"] == 1
    assert entry.detail["before"][str(row.pk)]["attempts"] == 1
    assert "HTTP 422" in entry.detail["before"][str(row.pk)]["error"]

    # The kick after commit runs the mirror task (the worker, in-process here).
    monkeypatch.setattr(Conf, "SYNC", True)
    for kick in kicks:
        kick()

    row.refresh_from_db()
    assert (row.state, row.attempts, row.last_error) == (State.DONE, 1, "")
    assert [m["content"] for m in fake_chatwoot.posted()] == ["segunda", "primeira"]
    # Once: a second click finds nothing refused, and the sweep nothing due.
    resend(client, [refused])
    assert tasks.chatwoot_mirror_sweep() == {"mirrored": 0, "failed": 0, "retried": 0}
    assert len(fake_chatwoot.posted()) == 2
    assert AuditEntry.objects.filter(action="chatwoot_mirror_retry").count() == 1


@pytest.mark.parametrize("role", ["manager", "sdr"])
def test_managers_and_sdrs_may_not_send_refused_messages_again(
    lead_says, fake_chatwoot, role_client, role
):
    refused = refused_once(lead_says, fake_chatwoot, "primeira")

    response = resend(role_client(role), [refused])

    assert response.status_code == 200  # the changelist, with the action refused
    assert ChatwootMirror.objects.get(message=refused).state == State.FAILED
    assert not AuditEntry.objects.filter(action="chatwoot_mirror_retry").exists()
    assert fake_chatwoot.posted() == []


def test_a_write_sent_again_goes_before_the_later_ones_still_waiting(
    lead_says, fake_chatwoot, superuser
):
    refused = refused_once(lead_says, fake_chatwoot, "primeira")
    lead_says("segunda")
    lead_says("terceira")
    # Chatwoot is now failing as a whole: the refused write, back first, fails again.
    fake_chatwoot.fault = fake_chatwoot.refuse("POST", r"/messages$", 503)

    assert chatwoot_mirror_retry(mirrors=[refused.chatwoot_mirror], actor=superuser) == 1
    assert tasks.chatwoot_mirror_sweep() == {"mirrored": 0, "failed": 0, "retried": 1}
    assert fake_chatwoot.posted() == []

    with later(25):
        # The later rows waited behind it, past the breaker's window too.
        assert tasks.chatwoot_mirror_sweep() == {"mirrored": 3, "failed": 0, "retried": 0}
    assert [m["content"] for m in fake_chatwoot.posted()] == ["primeira", "segunda", "terceira"]


def test_the_dashboard_tile_leads_ops_to_the_refused_messages_and_the_action(
    lead_says, fake_chatwoot, role_client
):
    refused = refused_once(lead_says, fake_chatwoot, "primeira")
    lead_says("segunda")  # waiting: the tile still leads to what ops can act on
    client = role_client("ops")

    page = client.get(reverse("admin:index")).content.decode()
    tile = re.search(r'<a [^>]*id="tile-chatwoot" href="([^"]+)"', page)
    listing = client.get(tile.group(1).replace("&amp;", "&"))

    assert [m.pk for m in listing.context["cl"].result_list] == [refused.pk]
    actions = dict(listing.context["action_form"].fields["action"].choices)
    assert actions["chatwoot_retry"] == "Reenviar ao Chatwoot"


def test_ops_send_a_refused_label_sync_again_from_the_mirror_list(
    lead_says, fake_chatwoot, role_client, django_capture_on_commit_callbacks
):
    conversation = lead_says("Oi").conversation
    tasks.chatwoot_mirror_sweep()
    [chatwoot_conversation] = fake_chatwoot.conversations.values()
    # The label does not exist in Chatwoot's account yet: it refuses the write.
    fake_chatwoot.fault = fake_chatwoot.refuse("POST", r"/labels$", 422)
    with django_capture_on_commit_callbacks(execute=True):
        handoff_open(conversation=conversation, reason=Handoff.Reason.LEAD_REQUEST)
    tasks.chatwoot_mirror_sweep()
    sync = ChatwootMirror.objects.get(kind=ChatwootMirror.Kind.LABELS)
    assert sync.state == State.FAILED
    client = role_client("ops")
    changelist = reverse("admin:conversations_chatwootmirror_changelist")

    listing = client.get(changelist, {"state__exact": "failed"})
    assert [row.pk for row in listing.context["cl"].result_list] == [sync.pk]
    response = client.post(
        changelist, {"action": "chatwoot_retry", "_selected_action": [sync.pk]}, follow=True
    )

    assert [str(m) for m in response.context["messages"]] == [
        "1 escrita(s) de volta à fila do Chatwoot; 0 ignorada(s) (o Chatwoot não as recusou)."
    ]
    assert tasks.chatwoot_mirror_sweep() == {"mirrored": 1, "failed": 0, "retried": 0}
    assert chatwoot_conversation["labels"] == ["humano"]


@pytest.mark.parametrize("role", ["manager", "sdr"])
def test_managers_and_sdrs_do_not_see_the_mirror_list(lead_says, fake_chatwoot, role_client, role):
    refused = refused_once(lead_says, fake_chatwoot, "primeira")
    changelist = reverse("admin:conversations_chatwootmirror_changelist")

    response = role_client(role).post(
        changelist,
        {"action": "chatwoot_retry", "_selected_action": [refused.chatwoot_mirror.pk]},
    )

    assert response.status_code == 403
    assert ChatwootMirror.objects.get(message=refused).state == State.FAILED
