"""Every real fixture, posted to the real URL twice: what it produces, exactly once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from django_q.models import OrmQ

from channels.models import Chip, WebhookEvent
from conversations.models import Conversation, Handoff, Lead, LeadIdentity, Message
from tests.channels.webhooks import deliver, fixture_files, post_webhook
from tests.factories.conversations import ConversationFactory


def _outbound(
    chip: Chip, provider_message_id: str, status: str = Message.Status.SENDING
) -> Message:
    conversation = ConversationFactory(chip=chip)
    return Message.objects.create(
        conversation=conversation,
        chip=chip,
        direction=Message.Direction.OUTBOUND,
        purpose=Message.Purpose.REPLY,
        status=status,
        body="Olá!",
        provider_message_id=provider_message_id,
    )


def _inbound(chip: Chip) -> Message:
    return Message.objects.get(chip=chip, direction=Message.Direction.INBOUND)


def expect_inbound(text: str, phone: str | None, *, kind: str = "text", **fields) -> Callable:
    def check(chip: Chip, event: WebhookEvent) -> None:
        message = _inbound(chip)
        assert message.body == text
        assert message.kind == kind
        assert message.webhook_event == event
        assert message.conversation.lead.phone == phone
        assert message.status == Message.Status.RECEIVED
        for name, value in fields.items():
            assert getattr(message, name) == value
        assert event.status == WebhookEvent.Status.PROCESSED

    return check


def expect_status(provider_message_id: str, status: str) -> tuple[Callable, Callable]:
    def setup(chip: Chip) -> None:
        _outbound(chip, provider_message_id)

    def check(chip: Chip, event: WebhookEvent) -> None:
        message = Message.objects.get(chip=chip, provider_message_id=provider_message_id)
        assert message.status == status
        assert event.status == WebhookEvent.Status.PROCESSED

    return setup, check


def expect_ignored(reason: str) -> Callable:
    def check(chip: Chip, event: WebhookEvent) -> None:
        assert not Message.objects.filter(chip=chip).exists()
        assert event.status == WebhookEvent.Status.IGNORED
        assert reason in event.error

    return check


def expect_chip(status: str, **fields) -> Callable:
    def check(chip: Chip, event: WebhookEvent) -> None:
        chip.refresh_from_db()
        assert chip.status == status
        for name, value in fields.items():
            assert value(getattr(chip, name)) if callable(value) else getattr(chip, name) == value
        assert event.status == WebhookEvent.Status.PROCESSED

    return check


def expect_human_reply(text: str, phone: str) -> Callable:
    def check(chip: Chip, event: WebhookEvent) -> None:
        message = Message.objects.get(chip=chip)
        assert message.direction == Message.Direction.OUTBOUND
        assert message.purpose == Message.Purpose.HUMAN
        assert message.body == text
        conversation = message.conversation
        assert conversation.lead.phone == phone
        assert conversation.agent_paused
        assert conversation.controlled_by == Conversation.ControlledBy.HUMAN
        assert conversation.paused_reason
        handoff = Handoff.objects.get(conversation=conversation)
        assert handoff.reason == Handoff.Reason.HUMAN_REPLIED
        assert handoff.status == Handoff.Status.OPEN

    return check


def _no_setup(chip: Chip) -> None:
    return None


def _pending(chip: Chip) -> None:
    Chip.objects.filter(pk=chip.pk).update(status=Chip.Status.PENDING)


EXPECTATIONS: dict[str, tuple[Callable, Callable]] = {
    "meta/messages__text": (
        _no_setup,
        expect_inbound("Does it come in another color?", "+16505551234"),
    ),
    "meta/messages__image": (
        _no_setup,
        expect_inbound(
            "", "+972987654321", kind="image", media_id="65463453", media_mime_type="image/jpeg"
        ),
    ),
    "meta/messages__interactive_button_reply": (
        _no_setup,
        expect_inbound("title", "+972987654321"),
    ),
    "meta/statuses__sent": expect_status("wamid.xyzxyz", Message.Status.SENT),
    "meta/statuses__failed": expect_status("wamid.xyzxyz", Message.Status.FAILED),
    "evolution/messages_upsert__text_incoming_v1": (
        _no_setup,
        expect_inbound("hola - text", "+59170000001"),
    ),
    "evolution/messages_upsert__conversation_fromme_v1": (
        _no_setup,
        expect_human_reply("Teste", "+5522999990001"),
    ),
    "evolution/messages_upsert__group_v1": (_no_setup, expect_ignored("group message")),
    "evolution/messages_update__deleted_v2_reconstructed": (
        _no_setup,
        expect_ignored("ack of an inbound message"),
    ),
    "evolution/connection_update__close_v1": (
        _no_setup,
        expect_chip(Chip.Status.DISCONNECTED, last_error=lambda value: "401" in value),
    ),
    "evolution/qrcode_updated__pairing_code_v1": (
        _no_setup,
        expect_chip(Chip.Status.PENDING, qr_code=lambda value: value.startswith("2@AAAA")),
    ),
    "zapi/received__text": (_no_setup, expect_inbound("teste", "+5544999999999")),
    "zapi/received__image": (
        _no_setup,
        expect_inbound(
            "", "+5544999999999", kind="image", media_url="https://", media_mime_type="image/jpeg"
        ),
    ),
    "zapi/received__button_reply": (_no_setup, expect_inbound("Ótimo", "+5544999999999")),
    "zapi/received__text_fromme_captured": (
        _no_setup,
        expect_human_reply("Boa", "+551199990011"),
    ),
    "zapi/received__text_group_captured": (_no_setup, expect_ignored("group message")),
    "zapi/message_status__sent": expect_status("999999999999999999999", Message.Status.SENT),
    "zapi/message_status__read": expect_status("999999999999999999999", Message.Status.READ),
    "zapi/disconnected__docs": (_no_setup, expect_chip(Chip.Status.DISCONNECTED)),
    "sandbox/message__text": (_no_setup, expect_inbound("Oi, quero saber mais", "+5511999990001")),
    "sandbox/status__delivered": expect_status("sbx-out-0001", Message.Status.DELIVERED),
    "sandbox/connection__connected": (_pending, expect_chip(Chip.Status.CONNECTED)),
}


def _fixture_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def test_every_fixture_file_has_an_expectation():
    assert {_fixture_id(path) for path in fixture_files()} == set(EXPECTATIONS)


@pytest.mark.parametrize("path", fixture_files(), ids=_fixture_id)
def test_fixture_delivered_twice_has_one_effect(
    path, make_chip, client, django_capture_on_commit_callbacks
):
    chip = make_chip(path.parent.name)
    setup, check = EXPECTATIONS[_fixture_id(path)]
    setup(chip)
    body = path.read_bytes()
    messages_before = Message.objects.count()

    first = deliver(client, chip, body, django_capture_on_commit_callbacks)
    assert first.json()["status"] == "accepted"
    check(chip, first.event)
    messages_after_first = Message.objects.count()
    leads_after_first = Lead.objects.count()
    queued = OrmQ.objects.count()
    assert queued == 1

    # The provider retries the same delivery: same event, nothing enqueued or stored.
    with django_capture_on_commit_callbacks(execute=True):
        second = post_webhook(client, chip, body)
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate", "event_id": first.event.pk}
    assert WebhookEvent.objects.filter(chip=chip).count() == 1
    assert OrmQ.objects.count() == queued

    # Processing again (the sweep racing the task, an operator's reprocess) is harmless.
    from channels.services import webhook_event_process

    webhook_event_process(event_id=first.event.pk, force=True)
    assert Message.objects.count() == messages_after_first
    assert Lead.objects.count() == leads_after_first
    assert LeadIdentity.objects.values("external_id").distinct().count() == (
        LeadIdentity.objects.count()
    )
    if messages_after_first > messages_before:
        assert messages_after_first == messages_before + 1
    first.event.refresh_from_db()
    check(chip, first.event)
