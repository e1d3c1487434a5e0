"""django-q2 entry points of the campaigns app. Each one calls a service."""

from django.utils import timezone

from campaigns.followups import agent_follow_ups_send_due, follow_ups_send_due
from campaigns.models import Campaign
from campaigns.services import campaign_complete_if_done, campaigns_start_due


def campaigns_tick() -> dict[str, int]:
    """Every minute: start due campaigns, queue due follow-ups (campaigns' and agent
    profiles'), complete finished ones."""
    now = timezone.now()
    started = campaigns_start_due(now=now)
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
        "follow_ups": follow_ups,
        "agent_follow_ups": agent_follow_ups,
        "completed": completed,
    }
