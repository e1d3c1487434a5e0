"""The turn is planned while the lead may still be typing and sent when the window ends.

The plan is applied only if nothing it depends on changed; otherwise the
turn is planned again, so a plan made on an outdated conversation never
reaches the lead.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from agent import tasks
from agent.models import AgentRun
from agent.turns import SUPERSEDED_REASON
from conversations.models import Conversation, LeadIdentity, Message
from tests.agent.held_tasks import held_answer
from tests.channels.webhooks import load_fixture_json
from tests.factories.agent import AgentProfileFactory
from tests.factories.channels import WebhookEventFactory
from tests.factories.conversations import (
    ConversationFactory,
    InboundMessageFactory,
    OutboundMessageFactory,
)
from tests.support.fake_openai import completion, server_error

pytestmark = pytest.mark.django_db

WINDOW = 4.0


@pytest.fixture
def conversation(sandbox_chip, settings):
    settings.AGENT_BURST_WINDOW_SECONDS = WINDOW
    # The plan is carried to the window's end, not applied before it
    # (test_held_turn.py covers that): what a plan that cannot be held gets.
    settings.AGENT_APPLY_DURING_WINDOW = False
    sandbox_chip.agent_profile = AgentProfileFactory()
    sandbox_chip.save()
    return ConversationFactory(chip=sandbox_chip)


def window_over(message: Message) -> None:
    Message.objects.filter(pk=message.pk).update(
        received_at=timezone.now() - timedelta(seconds=WINDOW + 1)
    )


def contents(request) -> list[str]:
    return [m["content"] for m in request.body["messages"][1:]]


def replies(conversation: Conversation) -> list[str]:
    return list(
        Message.objects.filter(conversation=conversation, direction="out", reply_to__isnull=False)
        .order_by("pk")
        .values_list("body", flat=True)
    )


def test_the_model_is_asked_during_the_window_and_the_answer_leaves_when_it_ends(
    fake_openai, conversation
):
    conversation.lead.name = "Marina Souza"
    conversation.lead.save()
    message = InboundMessageFactory(conversation=conversation, body="oi, vocês fazem festa?")
    fake_openai.script(completion("Oi! Fazemos sim. Para quantas pessoas?"))

    assert tasks.answer_message(message.pk) == "waiting"
    [request] = fake_openai.requests
    assert contents(request) == ["oi, vocês fazem festa?"]
    assert replies(conversation) == []  # nothing before the lead is quiet
    args, kwargs = held_answer()
    assert kwargs["ahead"]["turn"] == [message.pk]
    # The broker holds what the plan depends on as a digest, not the lead's details.
    assert "Marina" not in repr(kwargs["ahead"])

    window_over(message)
    assert tasks.answer_message(*args, **kwargs) == "replied"

    assert len(fake_openai.requests) == 1  # not asked again
    assert replies(conversation) == ["Oi! Fazemos sim. Para quantas pessoas?"]
    [run] = AgentRun.objects.all()
    assert (run.message_id, run.kind, run.outcome, run.trigger) == (
        message.pk,
        AgentRun.Kind.LLM,
        AgentRun.Outcome.REPLIED,
        AgentRun.Trigger.INBOUND,
    )
    assert run.profile_id == conversation.chip.agent_profile_id
    assert run.latency_ms is not None
    assert run.finished_at is not None
    assert run.prompt_tokens is not None
    assert run.model
    message.refresh_from_db()
    assert message.status == Message.Status.PROCESSED


def _earlier_reply_fails(conversation, earlier):
    Message.objects.filter(pk=earlier.pk).update(status=Message.Status.FAILED)


def _lead_gives_a_name(conversation, earlier):
    conversation.lead.name = "Marina"
    conversation.lead.save()


def _profile_edited(conversation, earlier):
    profile = conversation.chip.agent_profile
    profile.system_prompt = "Você é a Júlia, de um buffet infantil."
    profile.save()


def _flow_moves(conversation, earlier):
    Conversation.objects.filter(pk=conversation.pk).update(flow_step="tipo")


@pytest.mark.parametrize(
    "change", [_earlier_reply_fails, _lead_gives_a_name, _profile_edited, _flow_moves]
)
def test_a_plan_made_on_a_conversation_that_changed_is_made_again(
    fake_openai, conversation, change
):
    earlier = OutboundMessageFactory(
        conversation=conversation, body="Olá! Posso ajudar?", status=Message.Status.SENT
    )
    message = InboundMessageFactory(conversation=conversation, body="quero um orçamento")
    fake_openai.script(completion("resposta antiga"), completion("resposta nova"))
    assert tasks.answer_message(message.pk) == "waiting"
    args, kwargs = held_answer()

    change(conversation, earlier)
    window_over(message)
    assert tasks.answer_message(*args, **kwargs) == "replied"

    assert len(fake_openai.requests) == 2
    assert replies(conversation) == ["resposta nova"]


def test_a_human_who_answered_during_the_window_is_not_followed_by_the_stale_plan(
    fake_openai, conversation
):
    message = InboundMessageFactory(conversation=conversation, body="oi")
    fake_openai.script(completion("Oi! Aqui é a Júlia."))
    assert tasks.answer_message(message.pk) == "waiting"
    args, kwargs = held_answer()

    OutboundMessageFactory(
        conversation=conversation, purpose=Message.Purpose.HUMAN, body="Oi, sou a Carla!"
    )
    window_over(message)
    assert tasks.answer_message(*args, **kwargs) == "already_answered"

    assert replies(conversation) == []
    assert not AgentRun.objects.exists()


def test_a_plan_the_model_failed_is_not_carried_and_the_model_is_asked_again(
    fake_openai, conversation, settings
):
    settings.OPENAI_MAX_ATTEMPTS = 1
    message = InboundMessageFactory(conversation=conversation, body="oi")
    fake_openai.script(server_error(), completion("Oi! Como posso ajudar?"))
    assert tasks.answer_message(message.pk) == "waiting"
    args, kwargs = held_answer()
    assert kwargs["ahead"] is None

    window_over(message)
    assert tasks.answer_message(*args, **kwargs) == "replied"

    assert replies(conversation) == ["Oi! Como posso ajudar?"]  # no fallback, no handoff
    conversation.refresh_from_db()
    assert conversation.controlled_by == Conversation.ControlledBy.AGENT


def test_a_plan_from_another_version_is_made_again(fake_openai, conversation):
    message = InboundMessageFactory(conversation=conversation, body="oi")
    fake_openai.script(completion("resposta antiga"), completion("resposta nova"))
    assert tasks.answer_message(message.pk) == "waiting"
    args, kwargs = held_answer()

    kwargs["ahead"] = {**kwargs["ahead"], "version": 0}
    window_over(message)
    assert tasks.answer_message(*args, **kwargs) == "replied"

    assert replies(conversation) == ["resposta nova"]


def test_switched_off_the_model_is_asked_only_once_the_window_ends(
    fake_openai, conversation, settings
):
    settings.AGENT_PLAN_DURING_WINDOW = False
    message = InboundMessageFactory(conversation=conversation, body="oi")
    assert tasks.answer_message(message.pk) == "waiting"
    assert fake_openai.requests == []
    args, kwargs = held_answer()
    assert kwargs["ahead"] is None

    window_over(message)
    assert tasks.answer_message(*args, **kwargs) == "replied"
    assert len(fake_openai.requests) == 1


def test_a_reply_still_queued_for_an_earlier_turn_is_superseded_by_the_planned_one(
    fake_openai, conversation
):
    question = InboundMessageFactory(conversation=conversation, body="quanto custa?")
    stale = OutboundMessageFactory(
        conversation=conversation, body="Para quantas pessoas?", reply_to=question
    )
    message = InboundMessageFactory(conversation=conversation, body="80 pessoas")
    fake_openai.script(completion("Para 80 pessoas fica R$ 9.000."))
    assert tasks.answer_message(message.pk) == "waiting"
    args, kwargs = held_answer()

    window_over(message)
    assert tasks.answer_message(*args, **kwargs) == "replied"

    stale.refresh_from_db()
    assert stale.status == Message.Status.CANCELLED
    assert stale.last_error == str(SUPERSEDED_REASON)
    assert replies(conversation) == ["Para quantas pessoas?", "Para 80 pessoas fica R$ 9.000."]


def _in_intake_line(conversation: Conversation, remote_jid: str) -> None:
    """A real Evolution delivery from `remote_jid` to the chip, still waiting in intake's line."""
    payload = load_fixture_json("evolution", "messages_upsert__text_incoming_v1")
    payload["data"]["key"]["remoteJid"] = remote_jid
    WebhookEventFactory(chip=conversation.chip, payload=payload)


def _first_task_with_a_delivery_in_line(conversation: Conversation, remote_jid: str) -> dict:
    message = InboundMessageFactory(conversation=conversation, body="oi")
    Message.objects.filter(pk=message.pk).update(received_at=timezone.now() - timedelta(seconds=1))
    _in_intake_line(conversation, remote_jid)

    assert tasks.answer_message(message.pk) == "waiting"

    _args, kwargs = held_answer()
    return kwargs


def test_no_plan_while_intake_still_holds_a_later_delivery_of_the_lead(fake_openai, conversation):
    phone = conversation.lead.phone.lstrip("+")

    kwargs = _first_task_with_a_delivery_in_line(conversation, f"{phone}@s.whatsapp.net")

    # The lead's next message would make the plan a wasted model call.
    assert fake_openai.requests == []
    assert kwargs["ahead"] is None


def test_a_lead_known_by_a_lid_is_recognised_in_intake_line_too(fake_openai, conversation):
    LeadIdentity.objects.create(
        lead=conversation.lead,
        provider=conversation.chip.provider,
        external_id="160815467536386@lid",
        is_lid=True,
    )

    kwargs = _first_task_with_a_delivery_in_line(conversation, "160815467536386@lid")

    assert fake_openai.requests == []
    assert kwargs["ahead"] is None


def test_other_leads_deliveries_in_line_do_not_hold_the_plan_back(fake_openai, conversation):
    # A hundred leads writing to one number at once: intake holds the others'.
    fake_openai.script(completion("Oi! Em que posso ajudar?"))

    kwargs = _first_task_with_a_delivery_in_line(conversation, "5511912345678@s.whatsapp.net")

    assert len(fake_openai.requests) == 1
    assert kwargs["ahead"]["plan"]["replies"] == ["Oi! Em que posso ajudar?"]
