"""Ingest through the real path: post the webhook, run the worker's task, look at the rows."""

from __future__ import annotations

import copy

import pytest

from channels import tasks
from channels.models import Chip
from channels.services import webhook_event_process
from conversations import ingest
from conversations.models import Conversation, Handoff, Lead, LeadIdentity, Message
from core.models import MetricCounter
from tests.channels.webhooks import chip_for, deliver, load_fixture, load_fixture_json, post_webhook
from tests.factories.conversations import ConversationFactory, LeadFactory


@pytest.fixture
def make_chip(db):
    return chip_for


@pytest.fixture
def evolution_chip(make_chip):
    return make_chip("evolution")


def _evolution_text(message_id: str, key: dict, text: str = "oi") -> dict:
    """The real v1 incoming-text fixture with its `key` replaced (the @lid variants of v2)."""
    payload = load_fixture_json("evolution", "messages_upsert__text_incoming_v1")
    payload = copy.deepcopy(payload)
    payload["data"]["key"] = {"fromMe": False, "id": message_id, **key}
    payload["data"]["message"]["conversation"] = text
    return payload


def _outbound(chip: Chip, provider_message_id: str, status: str) -> Message:
    return Message.objects.create(
        conversation=ConversationFactory(chip=chip),
        chip=chip,
        direction=Message.Direction.OUTBOUND,
        purpose=Message.Purpose.REPLY,
        status=status,
        provider_message_id=provider_message_id,
    )


# --- One lead, whatever WhatsApp calls them ----


def test_lead_seen_as_lid_then_by_phone_is_one_lead_with_one_conversation(
    evolution_chip, client, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    lid, jid = "10000000000099@lid", "5511999990077@s.whatsapp.net"

    deliver(client, evolution_chip, _evolution_text("M1", {"remoteJid": lid}), capture)
    lead = Lead.objects.get()
    assert lead.phone is None
    assert LeadIdentity.objects.get(lead=lead).is_lid

    # v2.3 gives the phone beside the @lid; then plain phone messages.
    deliver(
        client,
        evolution_chip,
        _evolution_text("M2", {"remoteJid": lid, "remoteJidAlt": jid}),
        capture,
    )
    deliver(client, evolution_chip, _evolution_text("M3", {"remoteJid": jid}), capture)

    lead = Lead.objects.get()
    assert lead.phone == "+5511999990077"
    assert set(lead.identities.values_list("external_id", flat=True)) == {lid, jid}
    conversation = Conversation.objects.get()
    assert conversation.lead == lead
    assert list(
        conversation.messages.order_by("pk").values_list("provider_message_id", flat=True)
    ) == [
        "M1",
        "M2",
        "M3",
    ]


def test_lid_lead_is_merged_into_the_lead_that_owns_the_phone(
    evolution_chip, client, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    lid, jid = "10000000000088@lid", "5511999990088@s.whatsapp.net"
    # The phone lead exists already (imported for a campaign, with an open thread).
    known = LeadFactory(phone="+5511999990088", name="Dra. Ana")
    campaign_thread = ConversationFactory(lead=known, chip=evolution_chip)
    deliver(client, evolution_chip, _evolution_text("L1", {"remoteJid": lid}), capture)
    assert Lead.objects.count() == 2

    deliver(
        client, evolution_chip, _evolution_text("L2", {"remoteJid": lid, "senderPn": jid}), capture
    )

    assert list(Lead.objects.all()) == [known]
    assert list(Conversation.objects.all()) == [campaign_thread]
    assert campaign_thread.messages.count() == 2
    assert set(known.identities.values_list("external_id", flat=True)) == {lid, jid}


def test_zapi_lid_beside_the_phone_is_kept_as_an_identity(
    make_chip, client, django_capture_on_commit_callbacks
):
    chip = make_chip("zapi")
    deliver(
        client, chip, load_fixture("zapi", "received__text"), django_capture_on_commit_callbacks
    )
    lead = Lead.objects.get()
    assert lead.phone == "+5544999999999"
    assert set(lead.identities.values_list("external_id", "is_lid")) == {
        ("5544999999999", False),
        ("81896604192873@lid", True),
    }


def test_a_lead_under_another_phone_is_not_merged(make_chip):
    chip = make_chip("sandbox")
    message = ingest.InboundMessage(
        provider_message_id="x1", sender_id="+5511999990001", phone="+5511999990001", kind="text"
    )
    ingest.inbound_message_ingest(chip=chip, message=message)
    other = ingest.InboundMessage(
        provider_message_id="x2",
        sender_id="+5511999990002",
        phone="+5511999990002",
        kind="text",
        alt_sender_ids=("+5511999990001",),
    )
    ingest.inbound_message_ingest(chip=chip, message=other)
    assert set(Lead.objects.values_list("phone", flat=True)) == {"+5511999990001", "+5511999990002"}


# --- Statuses never move backwards ----


def test_status_never_moves_backwards(make_chip, client, django_capture_on_commit_callbacks):
    chip = make_chip("zapi")
    message = _outbound(chip, "999999999999999999999", Message.Status.SENDING)

    deliver(
        client,
        chip,
        load_fixture("zapi", "message_status__read"),
        django_capture_on_commit_callbacks,
    )
    message.refresh_from_db()
    assert message.status == Message.Status.READ

    # The SENT callback arrives late (providers do not keep order).
    deliver(
        client,
        chip,
        load_fixture("zapi", "message_status__sent"),
        django_capture_on_commit_callbacks,
    )
    message.refresh_from_db()
    assert message.status == Message.Status.READ
    assert message.sent_at is not None
    assert message.read_at is not None


def test_failure_after_delivery_does_not_fail_the_message(
    make_chip, client, django_capture_on_commit_callbacks
):
    chip = make_chip("meta")
    message = _outbound(chip, "wamid.xyzxyz", Message.Status.DELIVERED)
    deliver(
        client, chip, load_fixture("meta", "statuses__failed"), django_capture_on_commit_callbacks
    )
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


def test_meta_failure_records_the_provider_error(
    make_chip, client, django_capture_on_commit_callbacks
):
    chip = make_chip("meta")
    message = _outbound(chip, "wamid.xyzxyz", Message.Status.SENT)
    deliver(
        client, chip, load_fixture("meta", "statuses__failed"), django_capture_on_commit_callbacks
    )
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.outcome == Message.Outcome.FAILED_PROVIDER
    assert message.last_error.startswith("130472")
    assert message.failed_at is not None


def test_status_for_a_message_we_do_not_know_is_ignored(
    make_chip, client, django_capture_on_commit_callbacks
):
    chip = make_chip("meta")
    response = deliver(
        client, chip, load_fixture("meta", "statuses__sent"), django_capture_on_commit_callbacks
    )
    assert response.event.status == "ignored"
    assert "no outbound message wamid.xyzxyz" in response.event.error


# --- A human answering from the phone pauses the agent ----


def test_our_own_message_echoed_back_does_not_pause_the_agent(
    evolution_chip, client, django_capture_on_commit_callbacks
):
    ours = _outbound(evolution_chip, "3A58500B6F6FDA9A5576", Message.Status.SENT)
    deliver(
        client,
        evolution_chip,
        load_fixture("evolution", "messages_upsert__conversation_fromme_v1"),
        django_capture_on_commit_callbacks,
    )
    assert Message.objects.get() == ours
    assert not Conversation.objects.filter(agent_paused=True).exists()
    assert not Handoff.objects.exists()


def test_echo_of_a_message_still_in_flight_does_not_pause_the_agent(
    evolution_chip, client, django_capture_on_commit_callbacks
):
    # The provider echoed our send before its HTTP answer gave us the id.
    lead = LeadFactory(phone="+5522999990001")
    conversation = ConversationFactory(lead=lead, chip=evolution_chip)
    in_flight = Message.objects.create(
        conversation=conversation,
        chip=evolution_chip,
        direction=Message.Direction.OUTBOUND,
        purpose=Message.Purpose.REPLY,
        status=Message.Status.SENDING,
        body="Teste",
    )
    deliver(
        client,
        evolution_chip,
        load_fixture("evolution", "messages_upsert__conversation_fromme_v1"),
        django_capture_on_commit_callbacks,
    )
    conversation.refresh_from_db()
    assert not conversation.agent_paused
    assert not Handoff.objects.exists()
    assert list(conversation.messages.all()) == [in_flight]


def test_human_reply_joins_the_leads_open_conversation(
    make_chip, client, django_capture_on_commit_callbacks
):
    chip = make_chip("zapi")
    lead = LeadFactory(phone="+551199990011")
    conversation = ConversationFactory(lead=lead, chip=chip)
    deliver(
        client,
        chip,
        load_fixture("zapi", "received__text_fromme_captured"),
        django_capture_on_commit_callbacks,
    )
    conversation.refresh_from_db()
    assert conversation.agent_paused
    assert conversation.paused_reason == ingest.HUMAN_REPLIED_REASON
    assert conversation.messages.get().purpose == Message.Purpose.HUMAN
    assert Handoff.objects.get().conversation == conversation
    assert MetricCounter.objects.get(name="handoffs_total").labels == '{"reason": "human_replied"}'
    # The lead's @lid came as chatLid on our own message.
    assert lead.identities.filter(external_id="100000000000011@lid").exists()


# --- The agent seam ----


@pytest.fixture
def agent_calls(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(ingest, "AGENT_HOOKS", [calls.append])
    return calls


def test_new_inbound_message_is_handed_to_the_agent_once_after_commit(
    make_chip, client, django_capture_on_commit_callbacks, agent_calls
):
    chip = make_chip("meta")
    with django_capture_on_commit_callbacks(execute=True):
        response = post_webhook(client, chip, load_fixture("meta", "messages__text"))
    event_id = response.json()["event_id"]

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        tasks.process_webhook_event(event_id)
        assert agent_calls == []  # not before commit
    assert len(callbacks) == 1
    assert agent_calls == [Message.objects.get().pk]

    with django_capture_on_commit_callbacks(execute=True):
        webhook_event_process(event_id=event_id, force=True)
    assert agent_calls == [Message.objects.get().pk]


def test_agent_hook_runs_on_commit_for_new_messages_only(
    make_chip, django_capture_on_commit_callbacks, agent_calls
):
    chip = make_chip("sandbox")
    message = ingest.InboundMessage(
        provider_message_id="s1", sender_id="+5511999990001", phone="+5511999990001", kind="text"
    )
    with django_capture_on_commit_callbacks(execute=True):
        first = ingest.inbound_message_ingest(chip=chip, message=message)
    with django_capture_on_commit_callbacks(execute=True):
        again = ingest.inbound_message_ingest(chip=chip, message=message)
    assert first.outcome == "stored"
    assert again.outcome == "duplicate"
    assert agent_calls == [first.message_id]


def test_paused_or_opted_out_conversations_are_not_handed_to_the_agent(
    make_chip, django_capture_on_commit_callbacks, agent_calls
):
    chip = make_chip("sandbox")
    paused = ConversationFactory(
        chip=chip, agent_paused=True, lead=LeadFactory(phone="+5511999990001")
    )
    LeadFactory(phone="+5511999990002", opted_out=True)
    with django_capture_on_commit_callbacks(execute=True):
        for n, phone in enumerate([paused.lead.phone, "+5511999990002"]):
            ingest.inbound_message_ingest(
                chip=chip,
                message=ingest.InboundMessage(
                    provider_message_id=f"p{n}", sender_id=phone, phone=phone, kind="text"
                ),
            )
    assert Message.objects.filter(direction="in").count() == 2
    assert agent_calls == []


# --- Chip health ----


def _meta_change(field: str, value: dict) -> dict:
    """The real text fixture's envelope with one `changes[]` item of another field.

    No attributable real body of these fields was found; the field names are Meta's.
    """
    payload = load_fixture_json("meta", "messages__text")
    payload["entry"][0]["changes"] = [{"field": field, "value": value}]
    return payload


def test_meta_quality_and_account_signals_are_kept_on_the_chip(
    make_chip, client, django_capture_on_commit_callbacks
):
    chip = make_chip("meta")
    quality = _meta_change(
        "phone_number_quality_update",
        {"display_phone_number": "15550783881", "event": "FLAGGED", "current_limit": "TIER_1K"},
    )
    deliver(client, chip, quality, django_capture_on_commit_callbacks)
    chip.refresh_from_db()
    assert chip.quality_rating == "RED"
    assert chip.health["FLAGGED"]["current_limit"] == "TIER_1K"
    assert chip.status == Chip.Status.CONNECTED

    account = _meta_change(
        "account_update",
        {"phone_number": "15550783881", "event": "ACCOUNT_RESTRICTION", "restriction_info": []},
    )
    deliver(client, chip, account, django_capture_on_commit_callbacks)
    chip.refresh_from_db()
    assert chip.status == Chip.Status.RESTRICTED
    assert chip.status_changed_at is not None
    assert "ACCOUNT_RESTRICTION" in chip.health
    assert chip.last_error


def test_qr_code_is_cleared_when_the_number_connects(
    make_chip, client, django_capture_on_commit_callbacks
):
    chip = make_chip("evolution", status=Chip.Status.PENDING)
    deliver(
        client,
        chip,
        load_fixture("evolution", "qrcode_updated__pairing_code_v1"),
        django_capture_on_commit_callbacks,
    )
    chip.refresh_from_db()
    assert chip.qr_code.startswith("2@")
    opened = load_fixture_json("evolution", "connection_update__close_v1")
    opened["data"]["state"] = "open"
    del opened["data"]["statusReason"]
    deliver(client, chip, opened, django_capture_on_commit_callbacks)
    chip.refresh_from_db()
    assert chip.status == Chip.Status.CONNECTED
    assert chip.qr_code == ""
