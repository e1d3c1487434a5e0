"""Every admin action that changes data leaves one audit entry; a refused one leaves none."""

from collections.abc import Callable

import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Group
from django.db.models import Model
from django.urls import reverse
from django.utils import timezone

from channels.models import Chip
from core.models import AuditEntry
from tests.factories import channels as channel_f
from tests.factories import conversations as conv_f


def _failed_outbound() -> Model:
    return conv_f.OutboundMessageFactory(
        status="failed", outcome="failed_provider", failed_at=timezone.now()
    )


def _answered_inbound() -> Model:
    inbound = conv_f.InboundMessageFactory(status="processed")
    conv_f.OutboundMessageFactory(conversation=inbound.conversation, reply_to=inbound)
    return inbound


# (changelist, action, builder, audit action, objects changed)
CASES: list[tuple[str, str, Callable[[], Model], str, int]] = [
    ("conversations_message", "retry_now", _failed_outbound, "message_retry", 1),
    (
        "conversations_message",
        "cancel_messages",
        conv_f.OutboundMessageFactory,
        "message_cancel",
        1,
    ),
    ("conversations_message", "reprocess_messages", _answered_inbound, "message_reprocess", 1),
    (
        "conversations_conversation",
        "reprocess_last_message",
        lambda: _answered_inbound().conversation,
        "conversation_reprocess",
        1,
    ),
    ("channels_chip", "block_chips", channel_f.ChipFactory, "chip_block", 1),
    (
        "channels_chip",
        "unblock_chips",
        lambda: channel_f.ChipFactory(can_prospect=False, can_follow_up=False),
        "chip_unblock",
        1,
    ),
    (
        "channels_chip",
        "reset_circuit",
        lambda: channel_f.ChipFactory(circuit_state=Chip.CircuitState.OPEN),
        "chip_reset_circuit",
        1,
    ),
    (
        "channels_webhookevent",
        "reprocess_selected",
        channel_f.WebhookEventFactory,
        "webhook_event_reprocess",
        1,
    ),
]


def _run(client, changelist: str, action: str, obj: Model, **extra):
    return client.post(
        reverse(f"admin:{changelist}_changelist"),
        {"action": action, helpers.ACTION_CHECKBOX_NAME: [obj.pk], **extra},
    )


@pytest.mark.django_db
@pytest.mark.parametrize(("changelist", "action", "build", "audited", "count"), CASES)
def test_ops_action_is_audited(
    client, django_user_model, changelist, action, build, audited, count
):
    ops = django_user_model.objects.create_user("ana", password="x", is_staff=True)
    ops.groups.add(Group.objects.get(name="ops"))
    client.force_login(ops)
    obj = build()

    response = _run(client, changelist, action, obj)

    assert response.status_code == 302
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.source, entry.actor, entry.object_count) == (
        audited,
        "admin",
        ops,
        count,
    )
    assert entry.object_ids == [str(obj.pk)]


@pytest.mark.django_db
@pytest.mark.parametrize(("changelist", "action", "build", "audited", "count"), CASES)
def test_a_refused_action_is_not_audited(
    client, django_user_model, changelist, action, build, audited, count
):
    sdr = django_user_model.objects.create_user("bia", password="x", is_staff=True)
    sdr.groups.add(Group.objects.get(name="sdr"))
    client.force_login(sdr)

    _run(client, changelist, action, build())

    assert not AuditEntry.objects.exists()


@pytest.mark.django_db
def test_forced_reprocess_is_audited_once_confirmed(client, django_user_model):
    ops = django_user_model.objects.create_user("ana", password="x", is_staff=True)
    ops.groups.add(Group.objects.get(name="ops"))
    client.force_login(ops)
    inbound = _answered_inbound()

    _run(client, "conversations_message", "reprocess_messages_force", inbound)
    assert not AuditEntry.objects.exists()  # the confirmation page changes nothing

    _run(client, "conversations_message", "reprocess_messages_force", inbound, post="yes")
    entry = AuditEntry.objects.get()
    assert entry.action == "message_reprocess_force"
    assert entry.detail == {"queued": 1}
