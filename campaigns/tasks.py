"""django-q2 entry points of the campaigns app. Each one calls a service."""

from django.utils import timezone

from campaigns import services
from campaigns.followups import agent_follow_ups_send_due, follow_ups_send_due
from campaigns.models import Campaign
from campaigns.services import campaign_complete_if_done, campaigns_start_due, campaigns_top_up


def campaign_start_due(campaign_id: int) -> str:
    """Enqueued by a start or resume too big for a web request (CAMPAIGN_START_INLINE_MAX)."""
    result = services.campaign_start_due(campaign_id=campaign_id)
    return result.message if result is not None else "not scheduled any more"


def campaigns_tick() -> dict[str, int]:
    """Every minute: start due campaigns, queue more of running ones' audiences, queue
    due follow-ups (campaigns' and agent profiles'), complete finished ones."""
    now = timezone.now()
    started = campaigns_start_due(now=now)
    topped_up = campaigns_top_up(now=now)
    follow_ups = follow_ups_send_due(now=now)
    agent_follow_ups = agent_follow_ups_send_due(now=now)
    completed = sum(
        campaign_complete_if_done(campaign_id=pk, now=now)
        for pk in Campaign.objects.filter(status=Campaign.Status.RUNNING).values_list(
            "pk", flat=True
        )
    )
    return {
        "started": len(started),
        "queued": topped_up,
        "follow_ups": follow_ups,
        "agent_follow_ups": agent_follow_ups,
        "completed": completed,
    }
