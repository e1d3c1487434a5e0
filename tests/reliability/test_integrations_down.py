"""Chatwoot, Slack and the LLM down at the same time, under a real qcluster.

Leads write through the real Evolution webhook; a qcluster runs the ingest,
the agent, the outbox and the mirror against local fakes: the WhatsApp
provider, an OpenAI-compatible server answering 500, a Slack webhook
answering 500 and a Chatwoot answering 503. Every lead still gets an answer
(the profile's fallback, with a handoff to a human), nothing waits on the
three that are down, and once they return the mirror writes every message
into Chatwoot once, in order, with the handoff label, and Slack hears of
every handoff.
"""

from __future__ import annotations

import copy
import time

import httpx
import pytest
from django_q.tasks import async_task

from conversations.chatwoot_mirror import MIRROR_MARKER
from conversations.models import ChatwootMirror, Conversation, Handoff, Message
from tests.channels.webhooks import load_fixture_json, post_webhook
from tests.factories.agent import AgentProfileFactory
from tests.factories.channels import ChipFactory
from tests.reliability.conftest import scale
from tests.support.fake_chatwoot import ACCOUNT, INBOX, TOKEN, running_fake_chatwoot
from tests.support.fake_openai import running_fake_openai, server_error
from tests.support.fake_provider import OK, SERVER_ERROR, running_fake_provider
from tests.support.processes import running_qcluster, wait_for

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

FALLBACK = "Estou com uma instabilidade agora; uma pessoa do time já vai te responder."


def chatwoot_down(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, json={"error": "Service Unavailable"})


def lead_writes(client, chip, index: int) -> None:
    payload = copy.deepcopy(load_fixture_json("evolution", "messages_upsert__text_incoming_v1"))
    payload["instance"] = chip.instance_id
    payload["data"]["key"]["remoteJid"] = f"55119{index:08d}@s.whatsapp.net"
    payload["data"]["key"]["id"] = f"3EB0DOWN{index:012d}"
    payload["data"]["pushName"] = f"Lead {index}"
    payload["data"]["message"]["conversation"] = f"Oi, sou o lead {index}, quanto custa?"
    response = post_webhook(client, chip, payload)
    assert response.status_code == 200, response.content


def test_chatwoot_slack_and_the_llm_down_every_lead_answered_mirrors_catch_up(client, report):
    leads = scale(full=40, bounded=6)
    with (
        running_fake_provider() as whatsapp,
        running_fake_provider() as slack,
        running_fake_openai() as llm,
        running_fake_chatwoot() as (chatwoot, chatwoot_url),
    ):
        llm.script(then=server_error())
        slack.always(SERVER_ERROR)
        chatwoot.fault = chatwoot_down
        chip = ChipFactory(
            provider="evolution",
            api_base_url=whatsapp.url,
            instance_id="tigo1",
            api_token="evo-key",
            min_interval_seconds=0,
            jitter_seconds=0,
            agent_profile=AgentProfileFactory(fallback_reply=FALLBACK, handoff_on_failure=True),
        )
        env = {
            "OPENAI_API_KEY": "sk-test-down",
            "OPENAI_BASE_URL": llm.url,
            "OPENAI_RETRY_BASE_SECONDS": "0.05",
            "OPENAI_TIMEOUT_SECONDS": "2",
            "AGENT_BURST_WINDOW_SECONDS": "0",
            "SLACK_WEBHOOK_URL": f"{slack.url}/services/T000/B000/XXXX",
            "CHATWOOT_URL": chatwoot_url,
            "CHATWOOT_API_TOKEN": TOKEN,
            "CHATWOOT_ACCOUNT_ID": str(ACCOUNT),
            "CHATWOOT_INBOX_ID": str(INBOX),
            "CHATWOOT_TIMEOUT_SECONDS": "2",
            "CHATWOOT_RETRY_BASE_SECONDS": "1",
            "CHATWOOT_RETRY_MAX_SECONDS": "2",
        }
        with running_qcluster(env=env, workers=2):
            started = time.monotonic()
            for index in range(leads):
                lead_writes(client, chip, index)

            def answered() -> int:
                return Message.objects.filter(
                    direction="out", status=Message.Status.SENT, body=FALLBACK
                ).count()

            wait_for(lambda: answered() == leads, timeout=40, what="every lead's fallback")
            all_answered = time.monotonic() - started
            # What each lead felt: its message stored to its answer accepted by the provider.
            slowest = max(
                (reply.sent_at - reply.reply_to.created_at).total_seconds()
                for reply in Message.objects.filter(body=FALLBACK).select_related("reply_to")
            )
            handoffs = Handoff.objects.filter(status="open").count()
            waiting = ChatwootMirror.objects.filter(state__in=["pending", "sending"]).count()
            chatwoot_calls_while_down = len(chatwoot.requests)

            # They come back; the periodic sweeps (enqueued here as the scheduler would).
            slack.always(OK)
            chatwoot.fault = None
            time.sleep(2.5)  # past the mirror's backoff window

            def caught_up() -> bool:
                async_task("conversations.tasks.chatwoot_mirror_sweep")
                async_task("conversations.tasks.handoff_sweep")
                time.sleep(1.5)
                done = not ChatwootMirror.objects.exclude(state="done").exists()
                notified = not Handoff.objects.filter(notified_at__isnull=True).exists()
                return done and notified

            wait_for(caught_up, timeout=40, interval=0.5, what="Chatwoot and Slack caught up")
            caught_up_after = time.monotonic() - started - all_answered

    replies = Message.objects.filter(direction="out").exclude(status=Message.Status.CANCELLED)
    per_lead = sorted(replies.values_list("conversation_id", flat=True))
    lost = leads - len(set(per_lead))
    report(
        scenario="Chatwoot, Slack and the LLM down together",
        load=f"{leads} leads writing, 2 workers",
        faults=(
            f"LLM 500, Slack 500, Chatwoot 503: every lead answered by the fallback "
            f"(slowest {slowest:.1f} s after its message); {waiting} mirror writes waited, "
            f"all written "
            f"{caught_up_after:.1f} s after the three came back"
        ),
        lost=lost,
        duplicated=len(per_lead) - len(set(per_lead)),
        **{"5xx": "n/a"},
    )
    # Every lead: one answer, the fallback, and a human on the way.
    assert lost == 0
    assert len(per_lead) == leads
    assert len(whatsapp.seen("/message/sendText/")) == leads
    assert handoffs == leads
    assert waiting > 0
    # While Chatwoot was down it was probed, not hammered.
    assert chatwoot_calls_while_down < 4 * leads
    # Every message once in Chatwoot, in order, with the handoff label; Slack heard each handoff.
    for conversation in Conversation.objects.all():
        ours = list(
            conversation.messages.exclude(status=Message.Status.CANCELLED)
            .order_by("created_at", "id")
            .values_list("pk", flat=True)
        )
        theirs = [
            m["content_attributes"][MIRROR_MARKER]
            for m in chatwoot.posted(int(conversation.external_id))
        ]
        assert theirs == ours
        assert chatwoot.conversations[int(conversation.external_id)]["labels"] == ["humano"]
    assert Handoff.objects.filter(notified_at__isnull=False).count() == leads
    assert len(slack.seen("/services/")) >= leads
