"""The agent on its own cluster, against real `qcluster` processes.

The burst window is a task held by the broker until the lead is quiet, not a
sleeping worker; a hanging model holds the agent's workers only, never the
webhook processing or the sends of the default cluster.
"""

from __future__ import annotations

import time

import pytest
from django.db.models import Count, Max, Min
from django_q.models import Success

from agent.models import AgentRun
from channels.models import WebhookEvent
from conversations.models import Message
from conversations.outbox import outbox_enqueue
from tests.channels.webhooks import post_webhook
from tests.factories.agent import AgentProfileFactory
from tests.factories.channels import ChipFactory
from tests.factories.conversations import ConversationFactory
from tests.support.fake_openai import hang, running_fake_openai
from tests.support.fake_provider import running_fake_provider
from tests.support.processes import running_qcluster, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

REDIS_URL = "redis://127.0.0.1:6379/4"


def sandbox_message(seq: int, phone: str, text: str) -> dict:
    return {
        "type": "message",
        "id": f"sbx-cluster-{seq:05d}",
        "from": phone,
        "name": "Lead",
        "text": text,
        "from_me": False,
        "timestamp": 1763780000 + seq,
    }


def cluster_env(fake_openai_url: str, **extra: str) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": "sk-test-cluster",
        "OPENAI_BASE_URL": fake_openai_url,
        # Each lead's own intake never limits these tests.
        "WEBHOOK_RATE_LIMIT_PER_MINUTE": "1000000",
        **extra,
    }


def replies() -> list[Message]:
    return list(
        Message.objects.filter(direction=Message.Direction.OUTBOUND, reply_to__isnull=False)
    )


def sent(messages: list[Message]) -> list[Message]:
    return [message for message in messages if message.sent_at is not None]


def test_one_agent_worker_answers_many_bursts_in_about_one_window_each_once(client):
    """Six leads each write twice at once; one agent worker; a 3 s window.

    A worker that slept through the window answered them one after another,
    3 s apart at least (15 s from the first answer to the last); scheduled
    for later, they all wait their window at the same time.
    """
    window = 3
    leads = 6
    chip = ChipFactory(
        provider="sandbox",
        agent_profile=AgentProfileFactory(),
        min_interval_seconds=0,
        jitter_seconds=0,
    )
    with running_fake_openai() as llm:
        env = cluster_env(llm.url, AGENT_BURST_WINDOW_SECONDS=str(window))
        with running_qcluster(env=env, workers=2, agent_workers=1):
            for n in range(leads):
                phone = f"+55119888800{n:02d}"
                for part, text in enumerate(["oi", "quero um orçamento para 80 pessoas"]):
                    payload = sandbox_message(n * 2 + part, phone, text)
                    assert post_webhook(client, chip, payload).status_code == 200
            wait_for(lambda: len(sent(replies())) >= leads, timeout=120, what="every lead answered")
            time.sleep(window + 1)  # room for a second answer, which must not come

    answers = replies()
    assert len(answers) == leads
    # One answer per lead, to the last message of the burst, the model asked once with both.
    per_conversation = Message.objects.filter(pk__in=[a.pk for a in answers]).values("conversation")
    assert all(row["n"] == 1 for row in per_conversation.annotate(n=Count("id")).values("n"))
    for answer in answers:
        # Two workers store a lead's two messages in either order: the answer
        # points at the one stored last; the model read both as written (below).
        stored_last = (
            Message.objects.filter(conversation=answer.conversation_id, direction="in")
            .order_by("-created_at", "-pk")
            .first()
        )
        assert answer.reply_to_id == stored_last.pk
        # Never sent before the lead had been quiet for the window since the
        # message reached us (a reply may be written earlier, and held).
        assert answer.reply_to.received_at is not None
        assert (answer.sent_at - answer.reply_to.received_at).total_seconds() >= window - 0.05
    assert llm.count() == leads
    assert all(
        [m["content"] for m in request.body["messages"][1:]]
        == ["oi", "quero um orçamento para 80 pessoas"]
        for request in llm.requests
    )
    assert AgentRun.objects.count() == leads
    assert not AgentRun.objects.filter(trigger=AgentRun.Trigger.RECOVERY).exists()
    # The hot path's tasks leave no success rows for the monitor to keep
    # (pruning them cost it 45 ms a task).
    hot = [
        "channels.tasks.process_webhook_delivery",
        "channels.tasks.process_webhook_event",
        "agent.tasks.answer_message",
    ]
    assert not Success.objects.filter(func__in=hot).exists()
    span = Message.objects.filter(pk__in=[a.pk for a in answers]).aggregate(
        first=Min("sent_at"), last=Max("sent_at")
    )
    # Well under the 15 s a sleeping worker needed, on a loaded machine too.
    assert (span["last"] - span["first"]).total_seconds() < window * (leads - 1) / 2


@pytest.mark.parametrize("broker", ["orm", "redis"])
def test_a_hanging_model_delays_no_webhook_processing_and_no_other_chips_send(
    client, broker, settings, monkeypatch
):
    """Every model call hangs; the default cluster still processes and sends in seconds."""
    env_broker = {}
    if broker == "redis":
        from django_q.conf import Conf

        # The test process enqueues (its webhook view) on the same broker as the clusters.
        monkeypatch.setattr(Conf, "ORM", None)
        monkeypatch.setattr(Conf, "REDIS", REDIS_URL)
        monkeypatch.setattr(Conf, "BROKER_CLASS", "core.brokers.PooledRedis")
        env_broker = {"Q_BROKER": "redis", "REDIS_URL": REDIS_URL}
        import redis

        redis.from_url(REDIS_URL).delete("django_q:sdr:q", "django_q:sdr-agent:q")
        redis.from_url(REDIS_URL).delete("django_q:sdr-agent:q:held")
    sandbox = ChipFactory(
        provider="sandbox",
        agent_profile=AgentProfileFactory(),
        min_interval_seconds=0,
        jitter_seconds=0,
    )
    with running_fake_openai() as llm, running_fake_provider() as provider:
        other_chip = ChipFactory(
            provider="evolution",
            api_base_url=provider.url,
            instance_id="outro",
            api_token="evo-key",
            min_interval_seconds=0,
            jitter_seconds=0,
        )
        human_thread = ConversationFactory(chip=other_chip, lead__phone="+5511977770000")
        llm.script(then=hang(120))
        env = cluster_env(
            llm.url,
            AGENT_BURST_WINDOW_SECONDS="0",
            OPENAI_TIMEOUT_SECONDS="100",
            OPENAI_MAX_ATTEMPTS="1",
            **env_broker,
        )
        with running_qcluster(env=env, workers=2, agent_workers=2):
            # Two leads: both agent workers are now stuck on the model.
            for n in range(2):
                payload = sandbox_message(n, f"+551198888700{n}", "oi, tudo bem?")
                assert post_webhook(client, sandbox, payload).status_code == 200
            wait_for(lambda: llm.count() >= 2, timeout=60, what="both agent workers on the model")

            # A third lead writes, and a human answers on another chip, meanwhile.
            started = time.monotonic()
            payload = sandbox_message(9, "+5511988887009", "alguém aí?")
            event_id = post_webhook(client, sandbox, payload).json()["event_id"]
            outbox_enqueue(
                conversation=human_thread,
                body="Oi! Aqui é a Ana, do time comercial.",
                purpose=Message.Purpose.HUMAN,
            )
            wait_for(
                lambda: (
                    WebhookEvent.objects.get(pk=event_id).status == WebhookEvent.Status.PROCESSED
                ),
                timeout=30,
                interval=0.1,
                what="the webhook processed",
            )
            processed_after = time.monotonic() - started
            wait_for(
                lambda: provider.seen("/message/sendText/outro"),
                timeout=30,
                interval=0.1,
                what="the other chip's send",
            )
            sent_after = time.monotonic() - started
            # The model still hangs: nothing of the agent has finished.
            assert not replies()
            assert llm.count() == 2
            llm.release()  # the clusters stop without waiting out the hang

    # Seconds on a loaded machine, where the model holds its workers for 100 s.
    assert processed_after < 10
    assert sent_after < 10
    assert Message.objects.filter(body="alguém aí?", direction="in").exists()
