"""Reads about campaigns: progress counts, send rate and an honest finish estimate."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from campaigns.models import Campaign, CampaignRecipient
from campaigns.pool import chip_remaining_today, chip_usable_for
from campaigns.windows import campaign_window_is_open
from channels import pacing
from channels.models import Chip
from conversations.models import Message

RATE_WINDOW = timedelta(minutes=10)
# The estimate walks forward in steps of this size, up to the horizon.
ESTIMATE_STEP = timedelta(minutes=15)
ESTIMATE_HORIZON = timedelta(days=60)

_R = CampaignRecipient.Status
_M = Message.Status


@dataclass
class CampaignProgress:
    total: int = 0
    pending: int = 0
    queued: int = 0
    # Not sent yet, once started: the queued ones and the pending ones the
    # scheduler's tick queues as the chips send (CAMPAIGN_QUEUE_AHEAD).
    waiting: int = 0
    sent: int = 0  # the provider took it (delivered and read included)
    delivered: int = 0
    read: int = 0
    replied: int = 0
    failed: int = 0
    cancelled: int = 0
    skipped: int = 0
    opted_out: int = 0
    follow_ups_sent: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    reply_rate: float = 0.0
    percent_done: float = 0.0
    sends_per_hour: float = 0.0
    estimated_finish: datetime | None = None
    status: str = ""
    status_label: str = ""
    paused_reason: str = ""

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        labels = dict(CampaignRecipient.SkipReason.choices)
        data["skipped_by_reason"] = {
            str(labels.get(key, key)): value for key, value in self.skipped_by_reason.items()
        }
        data["estimated_finish"] = (
            timezone.localtime(self.estimated_finish).strftime("%d/%m/%Y %H:%M")
            if self.estimated_finish
            else None
        )
        return data


def campaign_progress(campaign: Campaign, *, now: datetime | None = None) -> CampaignProgress:
    """Every count the campaign page shows, in two queries plus the estimate's few."""
    now = now or timezone.now()
    recipients = CampaignRecipient.objects.filter(campaign=campaign)
    reached = Q(message__status__in=[_M.SENT, _M.DELIVERED, _M.READ])
    counts = recipients.aggregate(
        total=Count("pk"),
        pending=Count("pk", filter=Q(status=_R.PENDING)),
        queued=Count("pk", filter=Q(status=_R.QUEUED)),
        sent=Count("pk", filter=reached),
        delivered=Count("pk", filter=Q(message__status__in=[_M.DELIVERED, _M.READ])),
        read=Count("pk", filter=Q(message__status=_M.READ)),
        replied=Count(
            "pk",
            filter=reached & Q(conversation__last_inbound_at__gt=F("message__sent_at")),
        ),
        failed=Count("pk", filter=Q(status=_R.FAILED)),
        cancelled=Count("pk", filter=Q(status=_R.CANCELLED)),
        skipped=Count("pk", filter=Q(status=_R.SKIPPED)),
        opted_out=Count("pk", filter=Q(lead__opted_out=True) & ~Q(status=_R.SKIPPED)),
        follow_ups_sent=Count("pk", filter=Q(follow_ups_sent__gt=0)),
    )
    progress = CampaignProgress(**{key: value or 0 for key, value in counts.items()})
    progress.skipped_by_reason = dict(
        recipients.filter(status=_R.SKIPPED)
        .values_list("skip_reason")
        .annotate(n=Count("pk"))
        .order_by("-n")
    )
    progress.status = campaign.status
    progress.status_label = str(campaign.get_status_display())
    progress.paused_reason = campaign.paused_reason
    if progress.sent:
        progress.reply_rate = round(progress.replied / progress.sent, 4)
    settled = progress.total - progress.pending - progress.queued
    if progress.total:
        progress.percent_done = round(100 * settled / progress.total, 1)
    recent = Message.objects.filter(
        campaign=campaign, direction=Message.Direction.OUTBOUND, sent_at__gte=now - RATE_WINDOW
    ).count()
    progress.sends_per_hour = round(recent * (timedelta(hours=1) / RATE_WINDOW), 1)
    remaining = progress.pending + progress.queued
    progress.waiting = remaining if campaign.started_at else progress.queued
    if campaign.status in (Campaign.Status.RUNNING, Campaign.Status.SCHEDULED) and remaining:
        progress.estimated_finish = campaign_estimated_finish(campaign, remaining, now=now)
    return progress


def campaign_estimated_finish(
    campaign: Campaign, remaining: int, *, now: datetime
) -> datetime | None:
    """When `remaining` sends are done, from the pool's pacing, windows and daily caps.

    Walks forward step by step: in each step every usable chip whose window
    and the campaign's are open sends at its paced rate (interval plus mean
    jitter) until its cap for that day is spent. None past the horizon or
    without a usable chip. Replies to leads share the chips and are ignored:
    the estimate is the best case.
    """
    chips = [chip for chip in campaign.chips.all() if chip_usable_for(campaign, chip)]
    if not chips:
        return None
    start = max(now, campaign.scheduled_at) if campaign.scheduled_at else now
    left_today = {chip.pk: chip_remaining_today(chip, now=now) for chip in chips}
    day_of = {chip.pk: start.astimezone(pacing.chip_zone(chip)).date() for chip in chips}
    step_seconds = ESTIMATE_STEP.total_seconds()
    moment = start
    budget = float(remaining)
    while moment - start < ESTIMATE_HORIZON:
        if campaign_window_is_open(campaign, now=moment):
            for chip in chips:
                today = moment.astimezone(pacing.chip_zone(chip)).date()
                if today != day_of[chip.pk]:
                    day_of[chip.pk] = today
                    left_today[chip.pk] = pacing.chip_daily_cap(chip, today=today)
                if pacing.chip_window_opens_at(chip, now=moment) is not None:
                    continue
                sends = min(step_seconds / _seconds_per_send(chip), left_today[chip.pk])
                left_today[chip.pk] -= sends
                budget -= sends
                if budget <= 0:
                    # Inside this step, in proportion to what was left.
                    overshoot = -budget / max(sends, 1e-9)
                    return moment + ESTIMATE_STEP * (1 - overshoot)
        moment += ESTIMATE_STEP
    return None


def _seconds_per_send(chip: Chip) -> float:
    return max(1.0, chip.min_interval_seconds + chip.jitter_seconds / 2)


def campaigns_with_counts(queryset: QuerySet[Campaign]) -> QuerySet[Campaign]:
    """Annotate recipient_total, recipient_unsent and recipient_sent (the changelist's bars)."""
    return queryset.annotate(
        recipient_total=Count("recipients"),
        recipient_unsent=Count(
            "recipients", filter=Q(recipients__status__in=[_R.PENDING, _R.QUEUED])
        ),
        recipient_sent=Count("recipients", filter=Q(recipients__status=_R.SENT)),
    )
