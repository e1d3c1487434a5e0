"""A plain turn is applied during the burst window, its reply held until the window ends.

Nothing leaves before the lead is quiet; when the window ends the reply is
released, or, if the conversation changed meanwhile, the applied turn is
withdrawn (its reply cancelled with the reason) and the turn answered again:
never silence, never two answers.
"""

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ

from agent import tasks
from agent.held_turn import WITHDRAWN_REASON
from agent.models import AgentRun, ConversationLease
from agent.plan_ahead import conversation_snapshot, turn_snapshot
from agent.turns import SUPERSEDED_REASON, _load
from conversations import outbox
from conversations.models import Conversation, Message
from conversations.ownership import conversation_set_owner
from tests.agent.held_tasks import held_answer, held_answers
from tests.channels.webhooks import load_fixture_json
from tests.factories.agent import AgentProfileFactory
from tests.factories.channels import WebhookEventFactory
from tests.factories.conversations import (
    ConversationFactory,
    InboundMessageFactory,
    OutboundMessageFactory,
)
from tests.support.fake_openai import Answer, completion

pytestmark = pytest.mark.django_db

WINDOW = 4.0
SEND_TASK = "conversations.tasks.outbox_send_now"


@pytest.fixture
def conversation(sandbox_chip, settings, fake_zapi):
    settings.AGENT_BURST_WINDOW_SECONDS = WINDOW
    # One scripted server stands in for the provider: what reaches it reached the lead.
    sandbox_chip.provider, sandbox_chip.api_base_url, sandbox_chip.api_token = (
        "evolution",
        fake_zapi.url,
        "k",
    )
    sandbox_chip.instance_id = "inst"
    sandbox_chip.agent_profile = AgentProfileFactory()
    sandbox_chip.save()
    return ConversationFactory(chip=sandbox_chip)


def first_task_holds(
    fake_openai, conversation: Conversation, says: str, *answers: str
) -> tuple[Message, tuple, dict]:
    """The lead writes; the first task plans and applies the turn, and leaves its resumption."""
    message = InboundMessageFactory(conversation=conversation, body=says)
    fake_openai.script(*(completion(text) for text in answers))
    assert tasks.answer_message(message.pk) == "waiting"
    args, kwargs = held_answer()
    return message, args, kwargs


def window_over(*messages: Message) -> None:
    Message.objects.filter(pk__in=[m.pk for m in messages]).update(
        received_at=timezone.now() - timedelta(seconds=WINDOW + 1)
    )


def answers(conversation: Conversation) -> list[tuple[str, str, str]]:
    """The agent's replies: text, status and why it did not leave."""
    return [
        (m.body, m.status, m.last_error)
        for m in Message.objects.filter(
            conversation=conversation, direction="out", reply_to__isnull=False
        ).order_by("pk")
    ]


def delivered(fake_zapi) -> list[str]:
    return [request.body["text"] for request in fake_zapi.seen("/message/sendText/")]


def send_tasks() -> int:
    return sum(1 for q in OrmQ.objects.all() if q.task["func"] == SEND_TASK)


def test_the_turn_is_applied_in_the_window_and_its_reply_leaves_only_when_it_ends(
    fake_openai, conversation, fake_zapi, django_capture_on_commit_callbacks
):
    conversation.lead.name = "Marina Souza"
    conversation.lead.save()
    message = InboundMessageFactory(conversation=conversation, body="oi, vocês fazem festa?")
    fake_openai.script(completion("Oi! Fazemos sim. Para quantas pessoas?"))

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.answer_message(message.pk) == "waiting"

    assert len(fake_openai.requests) == 1
    [reply] = Message.objects.filter(reply_to=message)
    assert (reply.body, reply.status) == ("Oi! Fazemos sim. Para quantas pessoas?", "queued")
    [run] = AgentRun.objects.all()
    assert (run.outcome, run.kind, run.message_id) == ("replied", "llm", message.pk)
    # Held: no sender is asked, and one that runs anyway finds nothing to send.
    assert send_tasks() == 0
    assert outbox.outbox_drain().attempts == 0
    assert delivered(fake_zapi) == []
    args, kwargs = held_answer()
    assert kwargs["ahead"] is None
    assert kwargs["held"]["replies"] == [reply.pk]
    assert "Marina" not in repr(kwargs["held"])  # a digest of the lead, not their details

    window_over(message)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.answer_message(*args, **kwargs) == "replied"

    assert send_tasks() == 1  # released, and the sender asked
    assert not ConversationLease.objects.exists()
    outbox.outbox_drain()
    assert delivered(fake_zapi) == ["Oi! Fazemos sim. Para quantas pessoas?"]
    assert len(fake_openai.requests) == 1
    assert AgentRun.objects.get().outcome == AgentRun.Outcome.REPLIED


def _earlier_reply_fails(conversation):
    Message.objects.filter(conversation=conversation, body="Olá! Posso ajudar?").update(
        status=Message.Status.FAILED
    )


def _lead_gives_a_name(conversation):
    conversation.lead.name = "Marina"
    conversation.lead.save()


def _profile_edited(conversation):
    profile = conversation.chip.agent_profile
    profile.system_prompt = "Você é a Júlia, de um buffet infantil."
    profile.save()


@pytest.mark.parametrize("change", [_earlier_reply_fails, _lead_gives_a_name, _profile_edited])
def test_a_turn_whose_conversation_changed_is_withdrawn_and_answered_again(
    fake_openai, conversation, fake_zapi, change
):
    OutboundMessageFactory(
        conversation=conversation, body="Olá! Posso ajudar?", status=Message.Status.SENT
    )
    message, args, kwargs = first_task_holds(
        fake_openai, conversation, "quero um orçamento", "resposta antiga", "resposta nova"
    )

    change(conversation)
    window_over(message)
    assert tasks.answer_message(*args, **kwargs) == "replied"

    assert len(fake_openai.requests) == 2
    assert answers(conversation) == [
        ("resposta antiga", "cancelled", str(WITHDRAWN_REASON)),
        ("resposta nova", "queued", ""),
    ]
    assert list(AgentRun.objects.order_by("pk").values_list("outcome", flat=True)) == [
        "superseded",
        "replied",
    ]
    outbox.outbox_drain()
    assert delivered(fake_zapi) == ["resposta nova"]


def test_a_lead_who_writes_again_gets_one_answer_to_both_messages(
    fake_openai, conversation, fake_zapi
):
    first = InboundMessageFactory(conversation=conversation, body="oi")
    fake_openai.script(completion("Oi! Como posso ajudar?"), completion("Fazemos sim!"))
    assert tasks.answer_message(first.pk) == "waiting"
    args, kwargs = held_answer()
    second = InboundMessageFactory(conversation=conversation, body="vocês fazem casamento?")
    assert tasks.answer_message(second.pk) == "busy"  # the waiting turn takes it along

    window_over(first)
    # Withdrawn, and the turn (both messages now) waits for the second one's window.
    assert tasks.answer_message(*args, **kwargs) == "waiting"
    args, kwargs = held_answer()
    assert kwargs["held"]["turn"] == [first.pk, second.pk]  # applied again, for both
    window_over(first, second)
    assert tasks.answer_message(*args, **kwargs) == "replied"

    contents = [m["content"] for m in fake_openai.requests[1].body["messages"][1:]]
    assert contents == ["oi", "vocês fazem casamento?"]
    assert answers(conversation) == [
        ("Oi! Como posso ajudar?", "cancelled", str(SUPERSEDED_REASON)),
        ("Fazemos sim!", "queued", ""),
    ]
    outbox.outbox_drain()
    assert delivered(fake_zapi) == ["Fazemos sim!"]


def test_a_human_who_takes_over_in_the_window_is_not_followed_by_the_held_reply(
    fake_openai, conversation, fake_zapi
):
    message, args, kwargs = first_task_holds(fake_openai, conversation, "oi", "Oi! Aqui é a Júlia.")

    conversation_set_owner(
        conversation=conversation, owner=Conversation.ControlledBy.HUMAN, reason="SDR assumiu"
    )
    window_over(message)
    assert tasks.answer_message(*args, **kwargs) == "skipped"

    assert answers(conversation) == [("Oi! Aqui é a Júlia.", "cancelled", str(WITHDRAWN_REASON))]
    message.refresh_from_db()
    assert message.status == Message.Status.RECEIVED  # the agent did not answer it
    assert AgentRun.objects.get().outcome == AgentRun.Outcome.SUPERSEDED
    outbox.outbox_drain()
    assert delivered(fake_zapi) == []
    assert not ConversationLease.objects.exists()


def test_a_lost_resume_costs_time_not_the_answer(fake_openai, conversation, fake_zapi):
    message = InboundMessageFactory(conversation=conversation, body="oi")
    fake_openai.script(completion("Oi! Em que posso ajudar?"))
    assert tasks.answer_message(message.pk) == "waiting"
    OrmQ.objects.all().delete()  # the broker lost the task that would resume the turn
    [reply] = Message.objects.filter(reply_to=message)
    lease = ConversationLease.objects.get()
    # Held exactly as long as the conversation's lease: both end together.
    assert reply.next_attempt_at == lease.expires_at

    with time_machine.travel(lease.expires_at + timedelta(seconds=1)):
        outbox.outbox_drain()

    assert delivered(fake_zapi) == ["Oi! Em que posso ajudar?"]


def test_intake_still_holding_part_of_the_burst_holds_the_reply_longer(
    fake_openai, conversation, fake_zapi
):
    message, args, kwargs = first_task_holds(fake_openai, conversation, "oi", "Oi!")

    # By arrival the window is over, but a delivery of the chip that came
    # within it still waits in intake's line (a flood): the turn waits by storage.
    window_over(message)
    payload = load_fixture_json("evolution", "messages_upsert__text_incoming_v1")
    event = WebhookEventFactory(chip=conversation.chip, payload=payload)
    type(event).objects.filter(pk=event.pk).update(
        received_at=timezone.now() - timedelta(seconds=WINDOW - 1)
    )
    assert tasks.answer_message(*args, **kwargs) == "waiting"

    [(_args, again, due)] = held_answers()
    message.refresh_from_db()
    assert due == message.created_at + timedelta(seconds=WINDOW)
    assert again["held"] == kwargs["held"]
    [reply] = Message.objects.filter(reply_to=message)
    assert reply.next_attempt_at == ConversationLease.objects.get().expires_at > due
    assert outbox.outbox_drain().attempts == 0


def test_a_reply_that_already_left_is_never_withdrawn(fake_openai, conversation, fake_zapi):
    message, args, kwargs = first_task_holds(fake_openai, conversation, "oi", "Oi!")
    # The resume came after the lease, and with it the hold, had ended: the reply left.
    Message.objects.filter(reply_to=message).update(status=Message.Status.SENT)
    newer = InboundMessageFactory(conversation=conversation, body="que horas abre?")

    window_over(message)
    assert tasks.answer_message(*args, **kwargs) == "replied"

    assert answers(conversation) == [("Oi!", "sent", "")]
    assert AgentRun.objects.get().outcome == AgentRun.Outcome.REPLIED
    # The lead's newer message gets its own turn.
    [(next_args, _kwargs, _due)] = held_answers()
    assert next_args == (newer.pk,)


def test_a_plan_that_cannot_be_undone_is_carried_to_the_window_end_instead(
    fake_openai, conversation
):
    question = InboundMessageFactory(conversation=conversation, body="quanto custa?")
    OutboundMessageFactory(
        conversation=conversation, body="Para quantas pessoas?", reply_to=question
    )
    message = InboundMessageFactory(conversation=conversation, body="80 pessoas")
    fake_openai.script(completion("Para 80 pessoas fica R$ 9.000."))

    assert tasks.answer_message(message.pk) == "waiting"

    # Answering cancels the reply still queued for the earlier turn: not before the window ends.
    _args, kwargs = held_answer()
    assert kwargs["held"] is None
    assert kwargs["ahead"]["plan"]["replies"] == ["Para 80 pessoas fica R$ 9.000."]
    assert answers(conversation) == [("Para quantas pessoas?", "queued", "")]


def test_switched_off_every_plan_waits_for_the_window_end(fake_openai, conversation, settings):
    settings.AGENT_APPLY_DURING_WINDOW = False
    message = InboundMessageFactory(conversation=conversation, body="oi")
    fake_openai.script(completion("Oi!"))

    assert tasks.answer_message(message.pk) == "waiting"

    _args, kwargs = held_answer()
    assert kwargs["held"] is None
    assert kwargs["ahead"] is not None
    assert answers(conversation) == []


def test_the_two_snapshots_of_a_conversation_agree(conversation):
    """The window's end compares a snapshot read by SQL with one of the loaded rows."""
    conversation.agent_profile = AgentProfileFactory()
    conversation.flow_step, conversation.flow_data = "tipo", {"nome": "Ana", "convidados": 80}
    conversation.save()
    conversation.lead.email, conversation.lead.company = "ana@example.com", "Buffet Alegria"
    conversation.lead.save()
    InboundMessageFactory(conversation=conversation, body="oi")

    loaded = turn_snapshot(conversation=_load(conversation.pk))

    assert conversation_snapshot(conversation.pk) == loaded
    conversation.lead.name = "Ana Paula"
    conversation.lead.save()
    assert conversation_snapshot(conversation.pk) != loaded


def test_a_withdrawn_flow_turn_leaves_the_flow_as_if_never_applied(zapi_chip, fake_zapi, settings):
    settings.AGENT_BURST_WINDOW_SECONDS = WINDOW
    outcomes = []
    for apply_during_window in (True, False):
        settings.AGENT_APPLY_DURING_WINDOW = apply_during_window
        conversation = ConversationFactory(chip=zapi_chip)
        first = InboundMessageFactory(conversation=conversation, body="oi")
        assert tasks.answer_message(first.pk) == "waiting"
        if apply_during_window:
            conversation.refresh_from_db()
            assert conversation.flow_step  # the flow moved with the held question
        args, kwargs = held_answer()
        second = InboundMessageFactory(conversation=conversation, body="Ana")
        assert tasks.answer_message(second.pk) == "busy"
        window_over(first, second)
        assert tasks.answer_message(*args, **kwargs) == "replied"
        conversation.refresh_from_db()
        live = [body for body, status, _why in answers(conversation) if status == "queued"]
        outcomes.append((conversation.flow_step, conversation.flow_data, live))

    assert outcomes[0] == outcomes[1]


def test_an_operator_who_moved_the_flow_keeps_the_move(zapi_chip, fake_zapi, settings):
    settings.AGENT_BURST_WINDOW_SECONDS = WINDOW
    conversation = ConversationFactory(chip=zapi_chip)
    message = InboundMessageFactory(conversation=conversation, body="oi")
    assert tasks.answer_message(message.pk) == "waiting"
    args, kwargs = held_answer()

    # Ops move the flow to the event-type question while the lead types.
    Conversation.objects.filter(pk=conversation.pk).update(flow_step="tipo")
    window_over(message)
    assert tasks.answer_message(*args, **kwargs) == "replied"

    # The turn is answered again from where ops put the flow, not from the start.
    [live] = [body for body, status, _why in answers(conversation) if status == "queued"]
    assert live.startswith("Escolha uma das opções: 1, 2 ou 3 🙂")
    assert AgentRun.objects.filter(outcome=AgentRun.Outcome.SUPERSEDED).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_message_stored_while_the_model_answered_is_not_left_to_a_second_answer(
    fake_openai, conversation, fake_zapi
):
    """Two deliveries of one lead a few ms apart (the flood bench saw it happen).

    The first task read its turn before the second message was stored, then
    asked the model: the applied turn answers the first message only, so the
    window's end must find the second one and answer both together.
    """
    first = InboundMessageFactory(conversation=conversation, body="oi")
    fake_openai.script(
        Answer(hang=0.5, body=completion("Oi!").body), completion("Fazemos casamento sim!")
    )
    stored: list[Message] = []

    def lead_writes_again() -> None:
        try:
            stored.append(
                InboundMessageFactory(conversation=conversation, body="vocês fazem casamento?")
            )
        finally:
            connection.close()  # this thread's own connection

    writer = threading.Timer(0.2, lead_writes_again)
    writer.start()
    assert tasks.answer_message(first.pk) == "waiting"
    writer.join()
    args, kwargs = held_answer()
    assert kwargs["held"]["turn"] == [first.pk]  # the model was asked about "oi" alone

    window_over(first, *stored)
    assert tasks.answer_message(*args, **kwargs) == "replied"

    assert answers(conversation) == [
        ("Oi!", "cancelled", str(SUPERSEDED_REASON)),
        ("Fazemos casamento sim!", "queued", ""),
    ]
    contents = [m["content"] for m in fake_openai.requests[1].body["messages"][1:]]
    assert contents == ["oi", "vocês fazem casamento?"]
