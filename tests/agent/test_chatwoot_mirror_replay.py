"""A whole conversation mirrored into Chatwoot, and a bad day of Chatwoot's.

The lead writes through the real Z-API webhook; django-q2's sync mode runs the
real tasks (ingest, the qualification flow, the outbox against a local fake
Z-API, the mirror's kicks); Chatwoot's Application API is mocked at the HTTP
transport (respx, tests/support/fake_chatwoot.py). The periodic sweep is
called the way the scheduler calls it, on a controlled clock.
"""

import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from conversations import tasks
from conversations.chatwoot_mirror import MIRROR_MARKER
from conversations.models import ChatwootMirror, Conversation, Message
from tests.agent.zapi_lead import Lead_
from tests.support.fake_chatwoot import INBOX, server_error, timeout_after

pytestmark = pytest.mark.django_db

LEAD_PHONE = "+5544999999999"  # the Z-API fixture's sender
START = datetime(2026, 3, 10, 13, 0, tzinfo=UTC)
HANG = 1.5  # seconds Chatwoot hangs before each timeout


def transcript(conversation):
    """Our messages in the order they happened: what Chatwoot should show."""
    return list(
        Message.objects.filter(conversation=conversation)
        .exclude(status=Message.Status.CANCELLED)
        .order_by("created_at", "id")
        .values_list("pk", "direction", "body")
    )


def chatwoot_side(fake_chatwoot):
    [conversation_id] = fake_chatwoot.conversations
    return [
        (m["content_attributes"][MIRROR_MARKER], m["message_type"], m["content"])
        for m in fake_chatwoot.posted(conversation_id)
    ]


def as_chatwoot(rows):
    return [(pk, 0 if direction == "in" else 1, body) for pk, direction, body in rows]


def test_a_qualification_is_mirrored_in_order_with_the_handoff_label(
    client, zapi_chip, fake_zapi, fake_chatwoot, run_tasks, django_capture_on_commit_callbacks
):
    lead = Lead_(client, zapi_chip, django_capture_on_commit_callbacks)
    for text in ("Oi, queria saber o preço", "Daniella", "1", "mar", "dia 15", "uns 50"):
        lead.says(text)

    conversation = Conversation.objects.get(lead__phone=LEAD_PHONE)
    # The flow ended in a handoff (the profile's rule): the label is on in Chatwoot.
    assert conversation.controlled_by == Conversation.ControlledBy.HUMAN
    [contact] = fake_chatwoot.contacts.values()
    assert contact["phone_number"] == LEAD_PHONE
    [(chatwoot_id, chatwoot_conversation)] = fake_chatwoot.conversations.items()
    assert chatwoot_conversation["inbox_id"] == INBOX
    assert conversation.external_id == str(chatwoot_id)
    assert chatwoot_conversation["labels"] == ["humano"]
    # Every message once, in order: the lead's as incoming, ours as outgoing by the agent.
    assert chatwoot_side(fake_chatwoot) == as_chatwoot(transcript(conversation))
    authors = {m["content_attributes"]["sdr_ops_author"] for m in fake_chatwoot.posted()}
    assert authors == {"lead", "agent"}
    assert not ChatwootMirror.objects.exclude(state=ChatwootMirror.State.DONE).exists()


def test_chatwoot_failing_never_delays_whatsapp_and_catches_up_once_in_order(
    client,
    zapi_chip,
    fake_zapi,
    fake_chatwoot,
    run_tasks,
    django_capture_on_commit_callbacks,
    role_user,
    settings,
):
    settings.CHATWOOT_MIRROR_BACKLOG_WARN_SECONDS = 120
    lead = Lead_(client, zapi_chip, django_capture_on_commit_callbacks)
    waits: list[float] = []

    def lead_says(text: str) -> None:
        started = time.monotonic()
        lead.says(text)
        waits.append(time.monotonic() - started)

    with time_machine.travel(START, tick=True) as clock:
        # Chatwoot answers 500: the first write fails at once and backs off.
        fake_chatwoot.fault = server_error
        lead_says("Oi, queria saber o preço")
        # Then it hangs and times out, for a while.
        fake_chatwoot.fault = timeout_after(HANG)
        calls_before = len(fake_chatwoot.requests)
        lead_says("Daniella")
        lead_says("1")
        # Kicks while Chatwoot backs off do not call it: the lead's turns never wait on it.
        assert len(fake_chatwoot.requests) == calls_before
        for step in (11, 21, 41, 81):  # each probe window, as the scheduler's sweep sees it
            clock.shift(timedelta(seconds=step))
            probes_before = len(fake_chatwoot.requests)
            assert tasks.chatwoot_mirror_sweep() == {"mirrored": 0, "failed": 0, "retried": 1}
            assert len(fake_chatwoot.requests) == probes_before + 1  # one probe per window
        lead_says("mar")

        conversation = Conversation.objects.get(lead__phone=LEAD_PHONE)
        ours = transcript(conversation)
        # WhatsApp: every lead message answered, each turn far quicker than one Chatwoot hang.
        assert len(fake_zapi.seen("/send-text")) == 4
        assert max(waits) < HANG, waits
        # Nothing reached Chatwoot, and the backlog shows.
        assert not fake_chatwoot.posted()
        assert ChatwootMirror.objects.filter(state__in=["pending", "sending"]).count() == len(ours)
        client.force_login(role_user("ops"))
        health = client.get("/health").json()
        assert health["status"] == "degraded"
        assert health["checks"]["chatwoot"]["status"] == "degraded"
        assert health["checks"]["chatwoot"]["pending"] == len(ours)
        dashboard = client.get(reverse("admin:index")).content.decode()
        assert 'id="tile-chatwoot"' in dashboard
        backlog = client.get(
            reverse("admin:conversations_message_changelist"), {"chatwoot": "pendente"}
        )
        assert backlog.context["cl"].result_count == len(ours)

        # Chatwoot is back: the next sweep writes everything, once, in order.
        fake_chatwoot.fault = None
        clock.shift(timedelta(seconds=settings.CHATWOOT_RETRY_MAX_SECONDS + 1))
        report = tasks.chatwoot_mirror_sweep()
        lead_says("dia 15")

    assert report == {"mirrored": len(ours), "failed": 0, "retried": 0}
    assert chatwoot_side(fake_chatwoot) == as_chatwoot(transcript(conversation))
    assert len(fake_chatwoot.conversations) == 1
    assert len(fake_chatwoot.contacts) == 1
    assert client.get("/health").json()["checks"]["chatwoot"]["status"] == "ok"
