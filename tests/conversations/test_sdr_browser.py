"""The SDR's screen as an SDR uses it, in a real headless Chromium.

The reply leaves through the real outbox (django-q2's sync mode runs the
sender the kick enqueues) to the local fake provider.
"""

from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django_q.conf import Conf

from conversations.models import Conversation, Handoff, Message
from tests.factories.conversations import (
    ConversationFactory,
    HandoffFactory,
    InboundMessageFactory,
    OutboundMessageFactory,
)
from tests.support.browser import admin_form_login

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

SCREENSHOTS = Path(settings.BASE_DIR) / "test-results" / "screenshots" / "sdr_handoff"


def test_an_sdr_takes_a_handoff_replies_from_the_chat_and_gives_it_back(
    page, live_server, django_user_model, provider_chip, fake_provider, monkeypatch
):
    monkeypatch.setattr(Conf, "SYNC", True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    conversation = ConversationFactory(
        chip=provider_chip(), lead__name="Daniella Harumi", lead__phone="+5511999990055"
    )
    InboundMessageFactory(conversation=conversation, body="Oi, queria um orçamento")
    OutboundMessageFactory(
        conversation=conversation, body="Oi! Eu sou a Júlia 😊 Qual é o seu nome?", status="sent"
    )
    InboundMessageFactory(conversation=conversation, body="Quero falar com uma pessoa")
    HandoffFactory(conversation=conversation, reason=Handoff.Reason.LEAD_REQUEST)
    Conversation.objects.filter(pk=conversation.pk).update(
        controlled_by=Conversation.ControlledBy.HUMAN, agent_paused=True
    )
    sdr = django_user_model.objects.create_user(
        "carla.sdr", password="s3nha-forte-sdr", is_staff=True
    )
    sdr.groups.add(Group.objects.get(name="sdr"))

    admin_form_login(page, live_server.url, username="carla.sdr", password="s3nha-forte-sdr")

    page.goto(f"{live_server.url}/admin/conversations/conversation/queue/")
    row = page.locator("#handoff-queue tbody tr").first
    assert "Daniella Harumi" in row.inner_text()
    assert "Solicitado" in row.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "01-queue.png"), full_page=True)

    row.locator("a", has_text="Abrir").click()
    page.wait_for_selector("#chat-messages")
    page.click("button[value=take_over]")
    page.wait_for_selector("text=Pronto")
    assert "Humano (SDR)" in page.locator("#chat-owner").inner_text()
    assert "carla.sdr" in page.locator("#chat-owner").inner_text()

    page.fill("#chat-reply textarea", "Oi Daniella, aqui é a Carla! Vamos ao orçamento?")
    page.click("#chat-reply button[type=submit]")
    page.wait_for_selector(".bubble.human")
    human = page.locator(".bubble.human").last.inner_text()
    assert "SDR (carla.sdr)" in human
    assert "Oi Daniella, aqui é a Carla!" in human
    page.screenshot(path=str(SCREENSHOTS / "02-chat-after-reply.png"), full_page=True)

    [sent] = fake_provider.requests
    assert "aqui é a Carla" in str(sent.body)
    reply = Message.objects.get(purpose=Message.Purpose.HUMAN)
    assert (reply.status, reply.sent_by) == (Message.Status.SENT, sdr)

    page.click("button[value=give_back]")
    page.wait_for_selector("text=Pronto")
    assert "Agente" in page.locator("#chat-owner").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "03-given-back.png"), full_page=True)
    conversation.refresh_from_db()
    assert conversation.controlled_by == Conversation.ControlledBy.AGENT
    handoff = Handoff.objects.get(conversation=conversation)
    assert handoff.status == Handoff.Status.RESOLVED
    assert handoff.assigned_to == sdr

    page.goto(f"{live_server.url}/admin/conversations/conversation/queue/")
    assert "Nenhuma conversa esperando um humano" in page.locator("#handoff-queue").inner_text()
