"""How fast and when a chip may send: interval with jitter, daily cap, warm-up, window.

Pacing protects the number, so it applies to what the business starts:
campaign and follow-up messages obey the send window, the daily cap and its
warm-up ramp, and need `can_prospect` / `can_follow_up`. Replies to a lead who
wrote (agent, human, system) go whenever the chip is free, but still respect
the minimum interval: two sends on one chip are never closer than that.
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

from channels.models import Chip

PROACTIVE_PURPOSES = frozenset({"campaign", "follow_up"})


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
            reason=f"Fora da janela de envio do chip (abre {opens:%d/%m %H:%M})", until=opens
        )
    local_today = now.astimezone(chip_zone(chip)).date()
    cap = chip_daily_cap(chip, today=local_today)
    if chip_sent_today(chip, now=now) >= cap:
        tomorrow = chip_local_midnight(chip, now=now) + timedelta(days=1)
        until = chip_window_opens_at(chip, now=tomorrow) or tomorrow
        return Block(reason=f"Limite diário do chip atingido ({cap})", until=until)
    return None


def chip_purpose_block(chip: Chip, *, purpose: str) -> str | None:
    """The chip-level permission a purpose needs, as a pt-BR reason when missing."""
    if purpose == "campaign" and not chip.can_prospect:
        return "Chip sem permissão para prospectar"
    if purpose == "follow_up" and not chip.can_follow_up:
        return "Chip sem permissão para follow-up"
    return None


def chip_next_send_at(chip: Chip, *, after: datetime) -> datetime:
    """The earliest next send after one that finished at `after`: interval plus jitter."""
    jitter = random.uniform(0, chip.jitter_seconds) if chip.jitter_seconds else 0.0  # noqa: S311
    return after + timedelta(seconds=chip.min_interval_seconds + jitter)


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
