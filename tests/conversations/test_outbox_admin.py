"""The outbox and chip admin actions, posted the way the admin changelist posts them."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign
from channels.models import Chip
from conversations.models import DeliveryAttempt, Message
from tests.factories.campaigns import CampaignFactory
from tests.factories.channels import ChipFactory
from tests.factories.conversations import OutboundMessageFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    def login(role):
        user = django_user_model.objects.create_user(
            username=f"{role}-user", password="pw-for-tests", is_staff=True
        )
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        return client

    return login


def post_action(client, model, action, objects):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return client.post(
        url, {"action": action, "_selected_action": [o.pk for o in objects]}, follow=True
    )


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def test_ops_retry_failed_messages_now(staff_client, django_capture_on_commit_callbacks):
    failed = OutboundMessageFactory(
        status=Message.Status.FAILED,
        outcome=Message.Outcome.FAILED_PERMANENT,
        attempts=3,
        last_error="HTTP 400",
        next_attempt_at=None,
    )
    sent = OutboundMessageFactory(status=Message.Status.SENT)

    with django_capture_on_commit_callbacks(execute=False) as kicks:
        response = post_action(staff_client("ops"), Message, "retry_now", [failed, sent])

    assert response.status_code == 200
    assert messages_of(response) == [
        "1 mensagem(ns) de volta à fila; 1 ignorada(s) "
        "(recebidas, já enviadas, em envio ou canceladas)."
    ]
    failed.refresh_from_db()
    assert failed.status == Message.Status.QUEUED
    assert failed.attempts == 0
    assert failed.outcome == ""
    assert failed.next_attempt_at <= timezone.now()
    sent.refresh_from_db()
    assert sent.status == Message.Status.SENT
    assert len(kicks) == 1  # the sender is nudged after commit


def test_ops_cancel_queued_messages_but_not_ones_in_flight(staff_client):
    queued = OutboundMessageFactory()
    sending = OutboundMessageFactory(status=Message.Status.SENDING)

    response = post_action(staff_client("ops"), Message, "cancel_messages", [queued, sending])

    assert messages_of(response) == [
        "1 mensagem(ns) cancelada(s); 1 ignorada(s) (recebidas, já enviadas ou em envio)."
    ]
    queued.refresh_from_db()
    sending.refresh_from_db()
    assert queued.status == Message.Status.CANCELLED
    assert queued.last_error == "Cancelada por ops-user"
    assert sending.status == Message.Status.SENDING


def test_a_manager_cannot_retry_or_cancel(staff_client):
    message = OutboundMessageFactory(status=Message.Status.FAILED)
    client = staff_client("manager")

    for action in ("retry_now", "cancel_messages"):
        post_action(client, Message, action, [message])

    message.refresh_from_db()
    assert message.status == Message.Status.FAILED


def test_the_message_page_lists_its_delivery_attempts(superuser_client):
    message = OutboundMessageFactory(status=Message.Status.FAILED)
    DeliveryAttempt.objects.create(
        message=message,
        chip=message.chip,
        started_at=timezone.now(),
        outcome=DeliveryAttempt.Outcome.PERMANENT,
        http_status=400,
        error="Bad Request: número inválido",
    )

    response = superuser_client.get(
        reverse("admin:conversations_message_change", args=[message.pk])
    )

    assert response.status_code == 200
    assert "Bad Request: número inválido" in response.content.decode()


def test_ops_block_a_chip_and_its_lonely_campaign_pauses(staff_client):
    chip = ChipFactory()
    other = ChipFactory()
    lonely = CampaignFactory(status=Campaign.Status.RUNNING, chips=[chip])
    shared = CampaignFactory(status=Campaign.Status.RUNNING, chips=[chip, other])

    response = post_action(staff_client("ops"), Chip, "block_chips", [chip])

    assert messages_of(response) == ["1 chip(s) bloqueado(s); 1 campanha(s) pausada(s)."]
    chip.refresh_from_db()
    assert not chip.can_prospect
    assert not chip.can_follow_up
    lonely.refresh_from_db()
    shared.refresh_from_db()
    assert lonely.status == Campaign.Status.PAUSED
    assert shared.status == Campaign.Status.RUNNING


def test_ops_unblock_a_restricted_chip(staff_client):
    chip = ChipFactory(status=Chip.Status.RESTRICTED, can_prospect=False, can_follow_up=False)

    response = post_action(staff_client("ops"), Chip, "unblock_chips", [chip])

    assert messages_of(response) == ["1 chip desbloqueado. Campanhas pausadas continuam pausadas."]
    chip.refresh_from_db()
    assert chip.can_prospect
    assert chip.can_follow_up
    assert chip.status == Chip.Status.CONNECTED


def test_ops_reset_an_open_circuit(staff_client, django_capture_on_commit_callbacks):
    chip = ChipFactory(
        circuit_state=Chip.CircuitState.OPEN,
        consecutive_failures=7,
        circuit_retry_at=timezone.now() + timedelta(hours=1),
    )

    with django_capture_on_commit_callbacks(execute=False) as kicks:
        response = post_action(staff_client("ops"), Chip, "reset_circuit", [chip])

    assert messages_of(response) == ["Circuit breaker reiniciado em 1 chip."]
    chip.refresh_from_db()
    assert chip.circuit_state == Chip.CircuitState.CLOSED
    assert chip.consecutive_failures == 0
    assert chip.circuit_retry_at is None
    assert len(kicks) == 1


def test_a_manager_cannot_block_or_reset_chips(staff_client):
    chip = ChipFactory(circuit_state=Chip.CircuitState.OPEN, consecutive_failures=5)
    client = staff_client("manager")

    post_action(client, Chip, "block_chips", [chip])
    post_action(client, Chip, "reset_circuit", [chip])

    chip.refresh_from_db()
    assert chip.can_prospect
    assert chip.circuit_state == Chip.CircuitState.OPEN


def test_the_chip_list_shows_todays_sends_against_the_warm_up_cap_and_errors(superuser_client):
    chip = ChipFactory(daily_cap=100, warmup_days=10, warmup_started_on=timezone.localdate())
    message = OutboundMessageFactory(conversation__chip=chip)
    for outcome in ["sent", "sent", "transient"]:
        DeliveryAttempt.objects.create(
            message=message,
            chip=chip,
            started_at=timezone.now(),
            outcome=outcome,
            http_status=200 if outcome == "sent" else 500,
            error="" if outcome == "sent" else "Internal Server Error",
        )

    listing = superuser_client.get(reverse("admin:channels_chip_changelist")).content.decode()
    page = superuser_client.get(reverse("admin:channels_chip_change", args=[chip.pk]))

    assert "2 / 10" in listing
    assert "Internal Server Error" in page.content.decode()
    assert "2 / 10" in page.content.decode()


def test_ops_role_has_the_outbox_permissions():
    ops = Group.objects.get(name="ops")
    codenames = set(ops.permissions.values_list("codename", flat=True))
    assert {"retry_message", "cancel_message", "block_chip", "reset_circuit_chip"} <= codenames
