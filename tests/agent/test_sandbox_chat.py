"""The sandbox chat page: a manager writes as a lead and watches the agent answer."""

import json

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from channels.models import WebhookEvent
from conversations.models import Conversation, Message
from tests.factories.agent import AgentProfileFactory
from tests.factories.channels import ChipFactory
from tests.support.processes import running_qcluster, wait_for

CHAT = reverse("agent_sandbox:chat")
SEND = reverse("agent_sandbox:send")
MESSAGES = reverse("agent_sandbox:messages")
RESET = reverse("agent_sandbox:reset")


def send(client, **data):
    return client.post(SEND, json.dumps(data), content_type="application/json")


@pytest.mark.django_db
def test_sending_takes_the_webhook_path_and_the_transcript_shows_the_conversation(
    superuser_client, sandbox_chip, flow_profile, run_tasks, django_capture_on_commit_callbacks
):
    other = AgentProfileFactory(name="Outro perfil")
    with django_capture_on_commit_callbacks(execute=True):
        response = send(
            superuser_client,
            chip=sandbox_chip.pk,
            phone="(11) 98888-7777",
            name="Ana",
            text="oi",
            profile=flow_profile.pk,
        )
    assert response.status_code == 200, response.content
    event = WebhookEvent.objects.get(pk=response.json()["event_id"])
    assert (event.provider, event.status) == ("sandbox", "processed")
    conversation = Conversation.objects.get(lead__phone="+5511988887777")
    assert conversation.agent_profile == flow_profile

    transcript = superuser_client.get(
        MESSAGES, {"chip": sandbox_chip.pk, "phone": "+5511988887777"}
    ).json()
    assert [(m["from_lead"], m["body"]) for m in transcript["messages"]] == [
        (True, "oi"),
        (False, "Oi! Eu sou a Júlia 😊 Qual é o seu nome?"),
    ]
    assert transcript["conversation"]["flow_step"] == "nome"
    assert transcript["conversation"]["profile"] == str(flow_profile)

    assert superuser_client.post(
        RESET,
        json.dumps({"chip": sandbox_chip.pk, "phone": "+5511988887777"}),
        content_type="application/json",
    ).json() == {"closed": 1}
    with django_capture_on_commit_callbacks(execute=True):
        send(
            superuser_client,
            chip=sandbox_chip.pk,
            phone="+5511988887777",
            text="oi",
            profile=other.pk,
        )
    assert Conversation.objects.filter(lead__phone="+5511988887777").count() == 2


@pytest.mark.django_db
def test_only_sandbox_chips_and_real_input(superuser_client, sandbox_chip):
    real = ChipFactory(provider="zapi")
    assert send(superuser_client, chip=real.pk, phone="+5511988887777", text="oi").json() == {
        "error": "Escolha um chip sandbox."
    }
    assert send(superuser_client, chip=sandbox_chip.pk, phone="abc", text="oi").status_code == 400
    assert send(
        superuser_client, chip=sandbox_chip.pk, phone="+5511988887777", text=" "
    ).json() == {"error": "Escreva uma mensagem."}
    assert not Message.objects.exists()
    page = superuser_client.get(CHAT).content.decode()
    assert sandbox_chip.name in page
    assert real.name not in page


@pytest.mark.django_db
def test_the_page_needs_the_sandbox_permission(client, django_user_model, sandbox_chip):
    sdr = django_user_model.objects.create_user("sdr", password="x", is_staff=True)
    sdr.groups.add(Group.objects.get(name="sdr"))
    client.force_login(sdr)
    assert client.get(CHAT).status_code == 403
    assert send(client, chip=sandbox_chip.pk, phone="+5511988887777", text="oi").status_code == 403

    manager = django_user_model.objects.create_user("gerente", password="x", is_staff=True)
    manager.groups.add(Group.objects.get(name="manager"))
    client.force_login(manager)
    assert client.get(CHAT).status_code == 200
    profiles = client.get(reverse("admin:agent_agentprofile_changelist")).content.decode()
    assert CHAT in profiles

    client.logout()
    assert client.get(CHAT).status_code == 302  # to the admin login


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_manager_tries_a_flow_in_the_sandbox_chat(page, admin_login, flow_profile):
    chip = ChipFactory(
        provider="sandbox",
        name="Sandbox Júlia",
        agent_profile=flow_profile,
        min_interval_seconds=0,
        jitter_seconds=0,
    )
    ChipFactory(provider="sandbox", name="Outro sandbox", agent_profile=AgentProfileFactory())
    bubbles = page.locator("#sandbox-messages .bubble")

    with running_qcluster(env={"AGENT_BURST_WINDOW_SECONDS": "0", "OPENAI_API_KEY": ""}):
        base = admin_login(page)
        page.goto(f"{base}/admin/agent/agentprofile/")
        page.click("text=Chat sandbox")
        page.wait_for_selector("#sandbox-form")
        page.select_option("#sandbox-chip", label=f"Sandbox Júlia — {flow_profile}")
        page.fill("#sandbox-phone", "+55 11 97777-1234")
        page.dispatch_event("#sandbox-phone", "change")

        page.fill("#sandbox-text", "Oi, queria saber o preço")
        page.press("#sandbox-text", "Enter")
        page.wait_for_selector(".bubble.agent:has-text('Qual é o seu nome?')", timeout=45_000)

        page.fill("#sandbox-text", "meu nome é Daniella")
        page.click("#sandbox-form input[type=submit]")
        page.wait_for_selector(".bubble.agent:has-text('Que tipo de evento')", timeout=45_000)
        page.fill("#sandbox-text", "formatura")
        page.press("#sandbox-text", "Enter")
        page.wait_for_selector(".bubble.agent:has-text('Escolha uma das opções')", timeout=45_000)

        texts = [bubbles.nth(i).inner_text() for i in range(bubbles.count())]
        assert texts[0].startswith("Oi, queria saber o preço")
        assert "Qual é o seu nome?" in texts[1]
        assert texts[2].startswith("meu nome é Daniella")
        # The state panel shows where the flow is and what it stored.
        page.wait_for_selector("#sandbox-state:has-text('tipo')")
        assert '"nome": "Daniella"' in page.inner_text("#sandbox-state")
        # Replies go through the outbox like any other: they end up sent.
        wait_for(
            lambda: not Message.objects.filter(direction="out").exclude(status="sent").exists(),
            timeout=30,
            what="replies sent",
        )
        conversation = Conversation.objects.get(lead__phone="+5511977771234")
        assert conversation.chip == chip
        assert conversation.flow_data == {"nome": "Daniella"}

        page.click("#sandbox-reset")
        page.wait_for_function("document.querySelectorAll('.bubble').length === 0")
        assert conversation.messages.count() == 6  # closed, not deleted
        page.goto("about:blank")  # stop the page's polling before the server goes away
