"""The stored event is the unit of work: the sweep, the admin's reprocess, W-API's caution."""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from channels import tasks
from channels.models import WebhookEvent
from conversations.models import Message
from core.schedules import PERIODIC_TASKS
from tests.channels.webhooks import deliver, load_fixture, post_webhook


def _received_event(client, chip, body, capture=None) -> WebhookEvent:
    """Posted, but its task never ran (the broker lost it)."""
    response = post_webhook(client, chip, body)
    assert response.status_code == 200
    return WebhookEvent.objects.get(pk=response.json()["event_id"])


def test_sweep_is_scheduled_every_minute():
    sweep = [
        task for task in PERIODIC_TASKS if task.func == "channels.tasks.sweep_stuck_webhook_events"
    ]
    assert len(sweep) == 1
    assert sweep[0].minutes == 1


def test_sweep_re_enqueues_only_events_stuck_in_received(make_chip, client):
    chip = make_chip("zapi")
    stuck = _received_event(client, chip, load_fixture("zapi", "received__text"))
    fresh = _received_event(client, chip, load_fixture("zapi", "message_status__sent"))
    WebhookEvent.objects.filter(pk=stuck.pk).update(
        received_at=timezone.now() - timedelta(minutes=5)
    )
    old_done = _received_event(client, chip, load_fixture("zapi", "disconnected__docs"))
    WebhookEvent.objects.filter(pk=old_done.pk).update(
        received_at=timezone.now() - timedelta(minutes=5), status=WebhookEvent.Status.PROCESSED
    )
    OrmQ.objects.all().delete()

    assert tasks.sweep_stuck_webhook_events() == 1
    assert OrmQ.objects.count() == 1
    # What the worker then runs for it:
    assert tasks.process_webhook_event(stuck.pk) == WebhookEvent.Status.PROCESSED
    assert Message.objects.get().body == "teste"
    fresh.refresh_from_db()
    assert fresh.status == WebhookEvent.Status.RECEIVED
    assert tasks.sweep_stuck_webhook_events() == 0


def test_task_for_an_already_processed_event_does_nothing(
    make_chip, client, django_capture_on_commit_callbacks
):
    chip = make_chip("sandbox")
    response = deliver(
        client, chip, load_fixture("sandbox", "message__text"), django_capture_on_commit_callbacks
    )
    assert tasks.process_webhook_event(response.event.pk) == WebhookEvent.Status.PROCESSED
    response.event.refresh_from_db()
    assert response.event.attempts == 1
    assert Message.objects.count() == 1


def test_failed_processing_is_kept_on_the_event(make_chip, client):
    chip = make_chip("sandbox")
    event = _received_event(client, chip, load_fixture("sandbox", "message__text"))
    # The chip's conversations cannot be written (PROTECT'd chip deleted underneath would
    # cascade); simplest real failure: a payload edited into something the ingest rejects.
    WebhookEvent.objects.filter(pk=event.pk).update(payload={"type": "message", "id": "x"})
    assert tasks.process_webhook_event(event.pk) == WebhookEvent.Status.INVALID
    event.refresh_from_db()
    assert "needs" in event.error
    assert event.attempts == 1


# --- Admin ---------------------------------------------------------------------------------


def test_admin_reprocess_action_processes_selected_events(superuser_client, make_chip, client):
    chip = make_chip("zapi")
    events = [
        _received_event(client, chip, load_fixture("zapi", name))
        for name in ("received__text", "received__text_group_captured")
    ]
    url = reverse("admin:channels_webhookevent_changelist")
    response = superuser_client.post(
        url,
        {"action": "reprocess_selected", "_selected_action": [e.pk for e in events]},
        follow=True,
    )
    assert response.status_code == 200
    statuses = dict(WebhookEvent.objects.values_list("pk", "status"))
    assert statuses == {events[0].pk: "processed", events[1].pk: "ignored"}
    assert Message.objects.count() == 1
    shown = [str(m) for m in response.context["messages"]]
    assert shown == ["2 evento(s) reprocessado(s) (ignored: 1, processed: 1)."]

    # Clicking again is harmless.
    superuser_client.post(url, {"action": "reprocess_selected", "_selected_action": [events[0].pk]})
    assert Message.objects.count() == 1


def test_reprocess_action_needs_change_permission(client, make_chip, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhookevent"))
    client.force_login(viewer)
    url = reverse("admin:channels_webhookevent_changelist")
    response = client.get(url)
    assert response.status_code == 200
    assert "reprocess_selected" not in response.content.decode()


def test_admin_filters_and_detail_render(superuser_client, make_chip, client):
    chip = make_chip("evolution")
    post_webhook(client, chip, b"not json")
    url = reverse("admin:channels_webhookevent_changelist")
    for query in ("?has_error=yes", "?has_error=no", "?provider=evolution", "?status=invalid"):
        assert superuser_client.get(url + query).status_code == 200
    event = WebhookEvent.objects.get()
    detail = superuser_client.get(reverse("admin:channels_webhookevent_change", args=[event.pk]))
    assert detail.status_code == 200
    assert "not JSON" in detail.content.decode()


def test_chip_admin_shows_the_qr_code(
    superuser_client, make_chip, client, django_capture_on_commit_callbacks
):
    chip = make_chip("evolution")
    deliver(
        client,
        chip,
        load_fixture("evolution", "qrcode_updated__pairing_code_v1"),
        django_capture_on_commit_callbacks,
    )
    page = superuser_client.get(reverse("admin:channels_chip_change", args=[chip.pk]))
    assert page.status_code == 200
    assert "<code>2@AAAA" in page.content.decode()


# --- W-API: conservative, no real fixture exists -------------------------------------------------


def test_wapi_unknown_shapes_are_stored_as_ignored_not_refused(
    make_chip, client, django_capture_on_commit_callbacks
):
    """Shape not verified against a real W-API payload (none was found): inline body."""
    chip = make_chip("wapi")
    response = deliver(
        client,
        chip,
        {"event": "somethingNew", "instanceId": "i1"},
        django_capture_on_commit_callbacks,
    )
    assert response.event.status == WebhookEvent.Status.IGNORED
    assert "shape not verified" in response.event.error


def test_wapi_plain_text_message_is_ingested(make_chip, client, django_capture_on_commit_callbacks):
    """Inline body using the field names third-party snippets show; not a real capture."""
    chip = make_chip("wapi", webhook_token="wapi-secret")
    body = {
        "event": "webhookReceived",
        "messageId": "W1",
        "fromMe": False,
        "sender": {"id": "5511999990055", "pushName": "Contato"},
        "chat": {"id": "5511999990055"},
        "msgContent": {"conversation": "oi"},
        "moment": 1763780000,
    }
    assert post_webhook(client, chip, body, sign=False).status_code == 401
    response = deliver(client, chip, body, django_capture_on_commit_callbacks)
    assert response.event.status == WebhookEvent.Status.PROCESSED
    message = Message.objects.get()
    assert (message.body, message.conversation.lead.phone) == ("oi", "+5511999990055")
