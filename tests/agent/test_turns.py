"""One turn, one reply; one worker per conversation; who the agent never answers."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ

from agent import tasks
from agent.models import AgentRun, ConversationLease
from agent.turns import SUPERSEDED_REASON
from conversations import tasks as conversation_tasks
from conversations.ingest import AGENT_HOOKS
from conversations.models import Conversation, Handoff, Message
from conversations.outbox import outbox_claim_next
from tests.agent.held_tasks import held_answers
from tests.channels.webhooks import post_webhook
from tests.factories.agent import AgentProfileFactory
from tests.factories.conversations import ConversationFactory, InboundMessageFactory
from tests.support.fake_openai import Answer, completion

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(sandbox_chip):
    sandbox_chip.agent_profile = AgentProfileFactory()
    sandbox_chip.save()
    return ConversationFactory(chip=sandbox_chip)


def outbound(conversation):
    return list(Message.objects.filter(conversation=conversation, direction="out").order_by("pk"))


def test_ingest_hands_the_message_to_a_worker_task_not_to_the_webhook(
    client, sandbox_chip, django_capture_on_commit_callbacks
):
    from agent.turns import agent_enqueue
    from channels import tasks as channel_tasks

    assert agent_enqueue in AGENT_HOOKS
    payload = {"type": "message", "id": "sbx-1", "from": "+5511988887777", "text": "oi"}
    with django_capture_on_commit_callbacks(execute=True):
        event_id = post_webhook(client, sandbox_chip, payload).json()["event_id"]
    OrmQ.objects.all().delete()  # the webhook's own processing task, run by hand below
    with django_capture_on_commit_callbacks(execute=True):
        channel_tasks.process_webhook_event(event_id)

    message = Message.objects.get(direction="in")
    [queued] = OrmQ.objects.all()
    assert queued.task["func"] == "agent.tasks.answer_message"
    assert queued.task["args"] == (message.pk,)
    assert not Message.objects.filter(direction="out").exists()  # nothing ran inline


def test_a_burst_of_messages_gets_one_reply_without_a_worker_waiting(
    fake_openai, conversation, settings
):
    settings.AGENT_BURST_WINDOW_SECONDS = 1.5
    burst = [
        InboundMessageFactory(conversation=conversation, body=text)
        for text in ["oi", "tudo bem?", "queria saber o preço do buffet"]
    ]
    fake_openai.script(completion("Oi! Tudo ótimo. O buffet sai a partir de R$ 120 por pessoa."))

    started = time.monotonic()
    assert tasks.answer_message(burst[0].pk) == "waiting"
    assert time.monotonic() - started < 1.5  # the worker did not sit out the window

    # The turn is resumed by a task the broker hands out once the lead has
    # been quiet for the window; meanwhile the conversation stays claimed.
    [(args, kwargs, due)] = held_answers()
    assert args == (burst[-1].pk,)
    assert abs((due - burst[-1].created_at).total_seconds() - 1.5) < 0.01
    # Applied meanwhile (agent.held_turn), its reply held: nothing may leave yet.
    [held] = outbound(conversation)
    assert held.status == Message.Status.QUEUED
    assert held.next_attempt_at > due
    assert outbox_claim_next() is None
    assert tasks.answer_message(burst[1].pk) == "busy"
    assert tasks.answer_message(burst[2].pk) == "busy"

    time.sleep(max(0.0, (due - timezone.now()).total_seconds()))
    assert tasks.answer_message(*args, **kwargs) == "replied"

    [reply] = outbound(conversation)
    assert reply.reply_to_id == burst[-1].pk
    assert outbox_claim_next().message_id == reply.pk  # released when the window ended
    assert [m["content"] for m in fake_openai.requests[0].body["messages"][1:]] == [
        "oi",
        "tudo bem?",
        "queria saber o preço do buffet",
    ]
    for message in burst:
        message.refresh_from_db()
        assert message.status == Message.Status.PROCESSED
    # Tasks of the burst that come late find their turn answered.
    assert tasks.answer_message(burst[1].pk) == "already_answered"
    assert len(fake_openai.requests) == 1
    assert AgentRun.objects.count() == 1
    assert not ConversationLease.objects.exists()


def test_a_burst_stored_out_of_order_reaches_the_model_in_the_order_the_lead_wrote(
    fake_openai, conversation, settings
):
    """Two workers stored the lead's second message before the first (CI saw it happen).

    The model reads them as written (WhatsApp's timestamp), the answer still
    covers both, and the SDR's transcript shows them as written too.
    """
    from conversations.sdr import conversation_transcript

    settings.AGENT_BURST_WINDOW_SECONDS = 0
    written = timezone.now() - timedelta(seconds=5)
    second = InboundMessageFactory(
        conversation=conversation,
        body="quero um orçamento para 80 pessoas",
        provider_timestamp=written + timedelta(seconds=1),
    )
    first = InboundMessageFactory(conversation=conversation, body="oi", provider_timestamp=written)
    fake_openai.script(completion("Claro! Para quando seria o evento?"))

    assert tasks.answer_message(first.pk) == "replied"

    [reply] = outbound(conversation)
    assert reply.reply_to_id == first.pk  # the one stored last
    assert [m["content"] for m in fake_openai.requests[0].body["messages"][1:]] == [
        "oi",
        "quero um orçamento para 80 pessoas",
    ]
    # Answered: neither message gets a second reply.
    assert tasks.answer_message(second.pk) == "already_answered"
    assert len(fake_openai.requests) == 1
    assert [line.message.body for line in conversation_transcript(conversation=conversation)] == [
        "oi",
        "quero um orçamento para 80 pessoas",
        "Claro! Para quando seria o evento?",
    ]


def test_a_message_during_the_wait_moves_the_answer_and_the_lead_still_gets_one(
    fake_openai, conversation, settings
):
    settings.AGENT_BURST_WINDOW_SECONDS = 0.3
    first = InboundMessageFactory(conversation=conversation, body="oi")
    assert tasks.answer_message(first.pk) == "waiting"
    [(args, kwargs, due)] = held_answers()
    time.sleep(0.1)
    second = InboundMessageFactory(conversation=conversation, body="vocês fazem casamento?")
    assert tasks.answer_message(second.pk) == "busy"  # the waiting turn takes it along

    time.sleep(max(0.0, (due - timezone.now()).total_seconds()))
    OrmQ.objects.all().delete()
    fake_openai.script(completion("Oi! Fazemos sim."))
    # Resumed on time for the first message, the lead is not quiet yet: it
    # waits again, for the second one, with no second task to answer it.
    assert tasks.answer_message(*args, **kwargs) == "waiting"
    [(args, kwargs, due)] = held_answers()
    assert args == (second.pk,)
    assert abs((due - second.created_at).total_seconds() - 0.3) < 0.01

    time.sleep(max(0.0, (due - timezone.now()).total_seconds()))
    assert tasks.answer_message(*args, **kwargs) == "replied"
    # Applied during each wait: the answer to "oi" alone was withdrawn before it left.
    assert [(r.body, r.reply_to_id, r.status) for r in outbound(conversation)] == [
        ("Oi! Como posso ajudar?", first.pk, Message.Status.CANCELLED),
        ("Oi! Fazemos sim.", second.pk, Message.Status.QUEUED),
    ]
    assert outbound(conversation)[0].last_error == str(SUPERSEDED_REASON)
    assert list(AgentRun.objects.order_by("pk").values_list("outcome", flat=True)) == [
        AgentRun.Outcome.SUPERSEDED,
        AgentRun.Outcome.REPLIED,
    ]
    assert [len(r.body["messages"]) - 1 for r in fake_openai.requests] == [1, 2]


def test_a_lead_who_keeps_typing_is_answered_after_the_longest_wait(conversation, settings):
    from datetime import timedelta

    from agent.turns import turn_quiet_at

    settings.AGENT_BURST_WINDOW_SECONDS = 4
    settings.AGENT_BURST_MAX_WAIT_SECONDS = 15
    now = timezone.now()
    old = InboundMessageFactory(conversation=conversation, body="oi")
    Message.objects.filter(pk=old.pk).update(created_at=now - timedelta(hours=2))
    typed = []
    for seconds_ago in (12, 9, 6, 3, 0):  # 3 s apart: never quiet for 4 s
        message = InboundMessageFactory(conversation=conversation, body=f"parte {seconds_ago}")
        Message.objects.filter(pk=message.pk).update(
            created_at=now - timedelta(seconds=seconds_ago)
        )
        typed.append(message)
    turn = list(Message.objects.filter(conversation=conversation).order_by("created_at"))

    # 15 s after the burst began (the message of two hours ago is not part of it).
    assert turn_quiet_at(turn) == now - timedelta(seconds=12) + timedelta(seconds=15)
    assert turn_quiet_at(turn[:2]) == turn[1].created_at + timedelta(seconds=4)


def _in_thread(target, *args):
    results = []

    def run():
        try:
            results.append(target(*args))
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, results


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_one_worker_per_conversation_and_a_message_arriving_meanwhile_is_not_lost(
    fake_openai, sandbox_chip
):
    sandbox_chip.agent_profile = AgentProfileFactory()
    sandbox_chip.save()
    conversation = ConversationFactory(chip=sandbox_chip)
    first = InboundMessageFactory(conversation=conversation, body="oi")
    fake_openai.script(
        Answer(hang=0.8, body=completion("Oi! Em que posso ajudar?").body),
        completion("Temos sim, para até 300 pessoas."),
    )

    thread, results = _in_thread(tasks.answer_message, first.pk)
    deadline = time.monotonic() + 5
    while not fake_openai.count() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ConversationLease.objects.exists()
    # The lead writes again while the first worker waits for the model.
    second = InboundMessageFactory(conversation=conversation, body="vocês têm salão grande?")
    assert tasks.answer_message(second.pk) == "busy"
    thread.join(timeout=20)

    assert results == ["replied"]
    # The first worker answered its turn, then found the new message after
    # releasing the conversation and queued a task for it.
    [queued] = [q for q in OrmQ.objects.all() if q.task["func"] == "agent.tasks.answer_message"]
    assert queued.task["args"] == (second.pk,)
    assert tasks.answer_message(*queued.task["args"]) == "replied"
    replies = outbound(conversation)
    assert [(r.body, r.reply_to_id) for r in replies] == [
        ("Oi! Em que posso ajudar?", first.pk),
        ("Temos sim, para até 300 pessoas.", second.pk),
    ]
    assert not ConversationLease.objects.exists()


def test_an_expired_lease_of_a_dead_worker_is_taken_over(fake_openai, conversation):
    from datetime import timedelta

    from django.utils import timezone

    ConversationLease.objects.create(
        conversation=conversation,
        token="dead-worker",
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    inbound = InboundMessageFactory(conversation=conversation, body="oi")

    assert tasks.answer_message(inbound.pk) == "replied"
    assert not ConversationLease.objects.exists()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"controlled_by": "human"}, "Conversa com um humano"),
        ({"agent_paused": True}, "Agente pausado nesta conversa"),
        ({"status": "closed"}, "Conversa encerrada"),
    ],
)
def test_no_reply_when_human_controlled_paused_or_closed(conversation, change, reason):
    Conversation.objects.filter(pk=conversation.pk).update(**change)
    inbound = InboundMessageFactory(conversation=conversation, body="oi")

    from agent.turns import message_reply

    result = message_reply(message_id=inbound.pk)
    assert (result.status, result.detail) == ("skipped", reason)
    assert outbound(conversation) == []
    assert not AgentRun.objects.exists()


@pytest.mark.parametrize("text", ["sair", "Parar!", "STOP", "quero descadastrar"])
def test_opt_out_marks_the_lead_and_confirms_once(conversation, text):
    inbound = InboundMessageFactory(conversation=conversation, body=text)

    assert tasks.answer_message(inbound.pk) == "opted_out"

    lead = conversation.lead
    lead.refresh_from_db()
    assert lead.opted_out
    assert lead.opted_out_at is not None
    [confirmation] = outbound(conversation)
    assert confirmation.body == conversation.chip.agent_profile.opt_out_confirmation
    again = InboundMessageFactory(conversation=conversation, body="parar")
    assert tasks.answer_message(again.pk) == "skipped"
    assert len(outbound(conversation)) == 1


def test_a_sentence_with_an_opt_out_word_inside_is_not_an_opt_out(fake_openai, conversation):
    inbound = InboundMessageFactory(
        conversation=conversation, body="não consigo parar de pensar na festa, me ajuda a planejar?"
    )
    assert tasks.answer_message(inbound.pk) == "replied"
    conversation.lead.refresh_from_db()
    assert not conversation.lead.opted_out


def test_opted_out_lead_is_kept_away_from_campaigns(conversation):
    from conversations.outbox import outbox_enqueue

    InboundMessageFactory(conversation=conversation, body="sair")
    tasks.answer_message(Message.objects.get(direction="in").pk)
    campaign_message = outbox_enqueue(
        conversation=conversation, body="Promoção de dezembro!", purpose="campaign"
    )

    conversation_tasks.outbox_send_now()

    campaign_message.refresh_from_db()
    assert campaign_message.status == Message.Status.CANCELLED
    confirmation = Message.objects.get(direction="out", purpose="reply")
    assert confirmation.status == Message.Status.SENT


def test_handoff_keyword_opens_a_handoff_and_the_notice_still_leaves(conversation):
    inbound = InboundMessageFactory(conversation=conversation, body="quero falar com um atendente")

    assert tasks.answer_message(inbound.pk) == "handoff"

    conversation.refresh_from_db()
    assert conversation.controlled_by == Conversation.ControlledBy.HUMAN
    handoff = Handoff.objects.get()
    assert handoff.reason == Handoff.Reason.LEAD_REQUEST
    [notice] = outbound(conversation)
    assert notice.body == conversation.chip.agent_profile.handoff_reply
    conversation_tasks.outbox_send_now()
    notice.refresh_from_db()
    assert notice.status == Message.Status.SENT  # the sender does not cancel a system notice
    assert AgentRun.objects.get().kind == "keyword"


def test_profile_comes_from_the_conversation_then_the_campaign_then_the_chip(conversation):
    from agent.selectors import profile_for
    from tests.factories.campaigns import CampaignFactory
    from tests.factories.conversations import OutboundMessageFactory

    chip_profile = conversation.chip.agent_profile
    assert profile_for(conversation=conversation) == chip_profile
    campaign = CampaignFactory(agent_profile=AgentProfileFactory())
    OutboundMessageFactory(conversation=conversation, purpose="campaign", campaign=campaign)
    assert profile_for(conversation=conversation) == campaign.agent_profile
    conversation.agent_profile = AgentProfileFactory()
    conversation.save()
    assert profile_for(conversation=conversation) == conversation.agent_profile
    conversation.agent_profile.is_active = False
    conversation.agent_profile.save()
    assert profile_for(conversation=conversation) == campaign.agent_profile
