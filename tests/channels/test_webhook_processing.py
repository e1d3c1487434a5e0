"""The stored event is the unit of work: the sweep, the admin's reprocess, W-API's caution."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import unescape
from urllib.parse import unquote

import segno
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


def test_sweep_re_enqueues_only_events_whose_task_was_lost(make_chip, client):
    chip = make_chip("zapi")
    lost = _received_event(client, chip, load_fixture("zapi", "received__text"))
    fresh = _received_event(client, chip, load_fixture("zapi", "message_status__sent"))
    WebhookEvent.objects.filter(pk=lost.pk).update(queued_at=timezone.now() - timedelta(minutes=6))
    old_done = _received_event(client, chip, load_fixture("zapi", "disconnected__docs"))
    WebhookEvent.objects.filter(pk=old_done.pk).update(
        queued_at=timezone.now() - timedelta(minutes=6), status=WebhookEvent.Status.PROCESSED
    )
    OrmQ.objects.all().delete()

    assert tasks.sweep_stuck_webhook_events() == 1
    assert OrmQ.objects.count() == 1
    # What the worker then runs for it:
    assert tasks.process_webhook_event(lost.pk) == WebhookEvent.Status.PROCESSED
    assert Message.objects.get().body == "teste"
    fresh.refresh_from_db()
    assert fresh.status == WebhookEvent.Status.RECEIVED
    assert tasks.sweep_stuck_webhook_events() == 0


def test_sweep_leaves_a_backlog_waiting_in_line_alone(make_chip, client):
    chip = make_chip("zapi")
    waiting = _received_event(client, chip, load_fixture("zapi", "received__text"))
    # Two minutes in a long queue: its task is still there, not lost.
    WebhookEvent.objects.filter(pk=waiting.pk).update(
        queued_at=timezone.now() - timedelta(minutes=2)
    )
    OrmQ.objects.all().delete()

    assert tasks.sweep_stuck_webhook_events() == 0
    assert OrmQ.objects.count() == 0


def test_sweep_re_enqueues_an_event_whose_worker_took_it_and_died(make_chip, client, settings):
    chip = make_chip("zapi")
    died = _received_event(client, chip, load_fixture("zapi", "received__text"))
    working = _received_event(client, chip, load_fixture("zapi", "message_status__sent"))
    now = timezone.now()
    stale = now - timedelta(seconds=settings.WEBHOOK_CLAIM_STALE_SECONDS + 5)
    WebhookEvent.objects.filter(pk=died.pk).update(
        queued_at=stale - timedelta(seconds=1), claimed_at=stale
    )
    WebhookEvent.objects.filter(pk=working.pk).update(
        queued_at=now - timedelta(seconds=10), claimed_at=now - timedelta(seconds=5)
    )
    OrmQ.objects.all().delete()

    assert tasks.sweep_stuck_webhook_events() == 1
    assert OrmQ.objects.count() == 1
    died.refresh_from_db()
    assert died.queued_at > died.claimed_at
    # Re-queued once: its clock restarts, the next sweeps leave it to its new task.
    assert tasks.sweep_stuck_webhook_events() == 0


def test_a_worker_taking_up_an_event_stamps_its_claim(make_chip, client):
    chip = make_chip("zapi")
    event = _received_event(client, chip, load_fixture("zapi", "received__text"))
    assert event.claimed_at is None

    tasks.process_webhook_event(event.pk)

    event.refresh_from_db()
    assert event.claimed_at is not None
    assert event.claimed_at >= event.queued_at


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
    assert shown == ["2 eventos reprocessados (ignored: 1, processed: 1)."]

    # Clicking again is harmless.
    superuser_client.post(url, {"action": "reprocess_selected", "_selected_action": [events[0].pk]})
    assert Message.objects.count() == 1


def test_reprocessing_a_body_that_was_not_json_keeps_the_real_reason(role_client, make_chip):
    chip = make_chip("evolution")
    client = role_client("ops")
    assert post_webhook(client, chip, b'{"event": "messages.upsert",').status_code == 400
    event = WebhookEvent.objects.get()
    reason = event.error
    assert reason.startswith("body is not JSON")

    response = client.post(
        reverse("admin:channels_webhookevent_changelist"),
        {"action": "reprocess_selected", "_selected_action": [event.pk]},
        follow=True,
    )
    event.refresh_from_db()
    assert (event.status, event.error) == (WebhookEvent.Status.INVALID, reason)
    shown = [str(m) for m in response.context["messages"]]
    assert shown == [
        "1 evento reprocessado (invalid: 1).",
        "1 evento continua inválido: o erro dele diz por quê.",
    ]


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


def test_chip_admin_shows_evolutions_pairing_string_as_a_qr_image_to_scan(
    superuser_client, make_chip, client, django_capture_on_commit_callbacks
):
    chip = make_chip("evolution")
    body = load_fixture("evolution", "qrcode_updated__pairing_code_v1")
    code = json.loads(body)["data"]["qrcode"]["code"]
    deliver(client, chip, body, django_capture_on_commit_callbacks)
    page = superuser_client.get(reverse("admin:channels_chip_change", args=[chip.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    images = re.findall(r'<img src="(data:image/svg\+xml[^"]+)"', html)
    assert len(images) == 1, "no QR image on the chip page"
    # Drawn from the chip's own pairing string (a full QR, not Micro QR: WhatsApp
    # reads no Micro QR), black on white with its quiet zone.
    qr = segno.make_qr(code, error="m")
    assert unescape(images[0]) == qr.svg_data_uri(
        omitsize=True, border=4, dark="#000", light="#fff"
    )
    assert "viewBox" in unquote(images[0])
    assert "<code>2@" not in html


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
