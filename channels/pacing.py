"""How fast and when a chip may send, by purpose.

Pacing protects the number from looking like a spammer, so the chip's
minimum interval with jitter, the send window, the daily cap with its warm-up
ramp and `can_prospect` / `can_follow_up` apply to what the business starts
(campaign and follow-up messages), counted between those sends only.

Messages that answer a lead who wrote (agent replies, flow questions, system
notices, a human's reply) go in seconds: the parts of one reply are a short
human-like gap apart (scaled by the next part's length, within bounds), and a
per-chip ceiling on replies per minute only bites under a real flood. A
campaign never delays a reply: replies are claimed first and never wait for
the campaign interval.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db.models import (
    Case,
    Count,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils.translation import gettext

from channels.models import Chip

PROACTIVE_PURPOSES = frozenset({"campaign", "follow_up"})
# Answers to a lead who wrote: paced by the reply rules, not the chip interval.
LIVE_PURPOSES = frozenset({"reply", "system", "human"})
REPLY_WINDOW = timedelta(minutes=1)


@dataclass(frozen=True)
class Block:
    reason: str
    until: datetime


def chip_zone(chip: Chip) -> ZoneInfo:
    try:
        return ZoneInfo(chip.time_zone or settings.TIME_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(settings.TIME_ZONE)


def chip_local_midnight(chip: Chip, *, now: datetime) -> datetime:
    local = now.astimezone(chip_zone(chip))
    return datetime.combine(local.date(), time.min, tzinfo=local.tzinfo)


def chip_daily_cap(chip: Chip, *, today: date) -> int:
    """The day's cap, ramped linearly over `warmup_days` from `warmup_started_on`.

    A number without `warmup_started_on` is an established one: full cap.
    """
    cap = chip.daily_cap
    if chip.warmup_started_on and chip.warmup_days:
        day = (today - chip.warmup_started_on).days + 1
        if day < chip.warmup_days:
            cap = max(1, math.ceil(cap * max(day, 1) / chip.warmup_days))
    return cap


def chip_sent_today(chip: Chip, *, now: datetime) -> int:
    """Messages the provider accepted from this chip since midnight in the chip's zone."""
    from conversations.models import DeliveryAttempt

    return DeliveryAttempt.objects.filter(
        chip=chip,
        started_at__gte=chip_local_midnight(chip, now=now),
        outcome=DeliveryAttempt.Outcome.SENT,
    ).count()


def _in_window(start: time, end: time, moment: time) -> bool:
    if start <= end:
        return start <= moment < end
    # An overnight window such as 20:00-02:00.
    return moment >= start or moment < end


def chip_window_opens_at(chip: Chip, *, now: datetime) -> datetime | None:
    """None when the chip may send now; otherwise when its send window next opens."""
    start, end = chip.send_window_start, chip.send_window_end
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(chip_zone(chip))
    if _in_window(start, end, local.time()):
        return None
    opens = datetime.combine(local.date(), start, tzinfo=local.tzinfo)
    if opens <= local:
        opens += timedelta(days=1)
    return opens


def chip_proactive_block(chip: Chip, *, now: datetime) -> Block | None:
    """Why business-initiated messages may not leave this chip now, and until when."""
    opens = chip_window_opens_at(chip, now=now)
    if opens is not None:
        return Block(
            reason=gettext("Outside the chip's send window (opens %(opens)s)")
            % {"opens": f"{opens:%d/%m %H:%M}"},
            until=opens,
        )
    local_today = now.astimezone(chip_zone(chip)).date()
    cap = chip_daily_cap(chip, today=local_today)
    if chip_sent_today(chip, now=now) >= cap:
        tomorrow = chip_local_midnight(chip, now=now) + timedelta(days=1)
        until = chip_window_opens_at(chip, now=tomorrow) or tomorrow
        return Block(
            reason=gettext("Chip's daily cap reached (%(cap)d)") % {"cap": cap}, until=until
        )
    return None


def chip_purpose_block(chip: Chip, *, purpose: str) -> str | None:
    """The chip-level permission a purpose needs, as a translated reason when missing."""
    if purpose == "campaign" and not chip.can_prospect:
        return gettext("Chip not allowed to prospect")
    if purpose == "follow_up" and not chip.can_follow_up:
        return gettext("Chip not allowed to follow up")
    return None


def chip_next_proactive_at(chip: Chip, *, after: datetime) -> datetime:
    """The earliest next business-initiated send after one that finished at `after`."""
    jitter = random.uniform(0, chip.jitter_seconds) if chip.jitter_seconds else 0.0  # noqa: S311
    return after + timedelta(seconds=chip.min_interval_seconds + jitter)


def chip_reply_ready_at(chip: Chip, *, now: datetime) -> datetime | None:
    """None when the chip may send a reply now; otherwise when its reply ceiling resets.

    A fixed one-minute window counted on the chip row (locked by the claim):
    a burst of up to the ceiling goes at once, and only a sustained flood waits.
    """
    started = chip.reply_window_started_at
    if started is None or started + REPLY_WINDOW <= now:
        return None
    if chip.reply_window_count < settings.OUTBOX_REPLY_MAX_PER_MINUTE:
        return None
    return started + REPLY_WINDOW


def chip_reply_count(chip: Chip, *, now: datetime) -> list[str]:
    """Count one reply against the chip's ceiling; the fields the caller must save."""
    started = chip.reply_window_started_at
    if started is None or started + REPLY_WINDOW <= now:
        chip.reply_window_started_at, chip.reply_window_count = now, 1
    else:
        chip.reply_window_count += 1
    return ["reply_window_started_at", "reply_window_count"]


def reply_part_gap(body: str) -> timedelta:
    """The pause before the next part of a reply: as if a person typed it, within bounds."""
    seconds = len(body) * settings.OUTBOX_REPLY_GAP_SECONDS_PER_CHAR
    low, high = settings.OUTBOX_REPLY_GAP_MIN_SECONDS, settings.OUTBOX_REPLY_GAP_MAX_SECONDS
    return timedelta(seconds=min(max(seconds, low), high))


def chips_with_sent_today(queryset: QuerySet[Chip], *, now: datetime) -> QuerySet[Chip]:
    """Annotate `sent_today` (accepted sends since local midnight) without a query per row.

    Midnight depends on each chip's zone; chips share a handful of zones, so one
    conditional subquery per zone keeps the admin list at a constant query count.
    """
    from conversations.models import DeliveryAttempt

    zones = list(Chip.objects.order_by().values_list("time_zone", flat=True).distinct())
    whens = []
    for zone in zones:
        probe = Chip(time_zone=zone)
        counted = (
            DeliveryAttempt.objects.filter(
                chip=OuterRef("pk"),
                outcome=DeliveryAttempt.Outcome.SENT,
                started_at__gte=chip_local_midnight(probe, now=now),
            )
            .order_by()
            .values("chip")
            .annotate(total=Count("pk"))
            .values("total")
        )
        whens.append(When(time_zone=zone, then=Subquery(counted)))
    if not whens:
        return queryset.annotate(sent_today=Value(0))
    return queryset.annotate(
        sent_today=Coalesce(Case(*whens, default=Value(0)), Value(0), output_field=IntegerField())
    )
