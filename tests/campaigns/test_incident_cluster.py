"""The seeds' campaign incident replayed end to end: a real qcluster, a local fake Meta API.

100 leads over a pool of 2 chips. Chip A sends 2 messages, then Meta answers
400 with an integrity restriction (code 131031): A is quarantined and its
unsent first messages move to chip B; every lead gets exactly one first
message. The follow-ups then go out from B until B is restricted too: the
campaign pauses by itself and says why, and `campaign cancel` cancels the
rest and says how many.
"""

from collections import Counter

import pytest
from django.core.management import call_command
from django_q.models import Schedule
from django_q.tasks import async_task

from campaigns.models import Campaign, CampaignRecipient
from channels.models import Chip
from conversations.models import Lead, Message
from tests.factories.campaigns import CampaignFactory
from tests.factories.channels import ChipFactory
from tests.support.fake_provider import OK, Reply, running_fake_provider
from tests.support.processes import running_qcluster, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

RESTRICTED = Reply(
    400,
    {
        "error": {
            "message": "This account is restricted from sending messages",
            "type": "OAuthException",
            "code": 131031,
            "error_data": {"details": "Business account locked"},
            "fbtrace_id": "AbCdEf123",
        }
    },
)
FIRST_FROM_B = 98
FOLLOW_UPS_FROM_B = 10


def meta_chip(url, instance_id):
    return ChipFactory(
        provider="meta",
        api_base_url=url,
        instance_id=instance_id,
        api_token="meta-token",
        min_interval_seconds=0,
        jitter_seconds=0,
        daily_cap=10_000,
    )


def test_restricted_chips_move_then_pause_then_cancel(capsys):
    # Only the tasks this test enqueues run, so it can count what each did.
    Schedule.objects.filter(func__startswith="conversations.").delete()
    Schedule.objects.filter(func__startswith="campaigns.").delete()
    with running_fake_provider() as provider:
        a = meta_chip(provider.url, "chipA")
        b = meta_chip(provider.url, "chipB")
        provider.route("/chipA/", OK, OK, then=RESTRICTED)
        provider.route("/chipB/", *[OK] * (FIRST_FROM_B + FOLLOW_UPS_FROM_B), then=RESTRICTED)
        leads = Lead.objects.bulk_create(
            [Lead(phone=f"+55119{i:08d}", name=f"Lead {i}") for i in range(100)]
        )
        campaign = CampaignFactory(
            chips=[a, b],
            message_template="Oi {{nome}}, tudo bem?",
            follow_up_after_hours=0,
            follow_up_texts="Conseguiu ver minha mensagem, {{nome}}?",
        )
        CampaignRecipient.objects.bulk_create(
            [CampaignRecipient(campaign=campaign, lead=lead) for lead in leads]
        )

        with running_qcluster(workers=2) as cluster:
            call_command("campaign", "start", str(campaign.pk))
            async_task("conversations.tasks.outbox_sweep", 20)
            wait_for(
                lambda: campaign.recipients.filter(status="sent").count() == 100,
                timeout=90,
                what="every lead's first message sent",
            )
            first = provider.seen()
            # Phase 2: the follow-ups go out from B until B is restricted too.
            async_task("campaigns.tasks.campaigns_tick")
            async_task("conversations.tasks.outbox_sweep", 20)
            wait_for(
                lambda: Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.PAUSED,
                timeout=90,
                what="the campaign paused when B was restricted",
            )
            assert cluster.poll() is None
        capsys.readouterr()
        call_command("campaign", "cancel", str(campaign.pk))
        out = capsys.readouterr().out
        requests = provider.seen()

    # Phase 1: A sent 2 and was refused once; everything else left from B.
    to_a = [r for r in first if "/chipA/" in r.path]
    assert [r.status for r in to_a] == [200, 200, 400]
    a.refresh_from_db()
    assert a.status == Chip.Status.RESTRICTED
    assert not a.can_prospect
    assert not [r for r in requests[len(first) :] if "/chipA/" in r.path]
    accepted = Counter(r.body["to"] for r in first if r.status == 200)
    assert len(accepted) == 100  # every lead reached
    assert set(accepted.values()) == {1}  # none twice
    assert len(first) == 101  # 100 first messages and the one refused attempt
    by_chip = Counter(
        Message.objects.filter(purpose="campaign").values_list("chip__instance_id", flat=True)
    )
    assert by_chip == {"chipA": 2, "chipB": FIRST_FROM_B}

    # Phase 2: B was restricted on its 11th follow-up; the campaign paused with the reason.
    b.refresh_from_db()
    assert b.status == Chip.Status.RESTRICTED
    campaign.refresh_from_db()
    assert f"Chip {b.name} restrito" in campaign.paused_reason
    assert "nenhum outro chip" in campaign.paused_reason
    follow_ups = [r for r in requests[len(first) :] if "/chipB/" in r.path]
    assert [r.status for r in follow_ups] == [200] * FOLLOW_UPS_FROM_B + [400]

    # Cancel: the rest is cancelled and counted; nothing failed, nothing lost.
    assert campaign.status == Campaign.Status.CANCELLED
    statuses = Counter(Message.objects.values_list("purpose", "status"))
    assert statuses == {
        ("campaign", "sent"): 100,
        ("follow_up", "sent"): FOLLOW_UPS_FROM_B,
        ("follow_up", "cancelled"): 100 - FOLLOW_UPS_FROM_B,
    }
    assert f"{100 - FOLLOW_UPS_FROM_B} envios cancelados" in out
    assert "sent 100" in out
