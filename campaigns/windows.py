"""A campaign's send window: days of the week and hours, in the campaign's time zone.

It applies on top of each chip's own window (channels.pacing): a message
leaves only when both are open.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings

from campaigns.models import Campaign


def campaign_zone(campaign: Campaign) -> ZoneInfo:
    try:
        return ZoneInfo(campaign.time_zone or settings.TIME_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(settings.TIME_ZONE)


def _weekdays(campaign: Campaign) -> set[int]:
    days = {int(ch) for ch in campaign.send_weekdays or "" if ch.isdigit() and int(ch) < 7}
    return days or set(range(7))


def _hours_open(campaign: Campaign, moment: time) -> bool:
    start, end = campaign.send_window_start, campaign.send_window_end
    if start is None or end is None or start == end:
        return True
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end  # overnight, e.g. 20:00-02:00


def campaign_window_is_open(campaign: Campaign, *, now: datetime) -> bool:
    local = now.astimezone(campaign_zone(campaign))
    return local.weekday() in _weekdays(campaign) and _hours_open(campaign, local.time())


def campaign_window_opens_at(campaign: Campaign, *, now: datetime) -> datetime | None:
    """None when the campaign may send now; otherwise when its window next opens."""
    if campaign_window_is_open(campaign, now=now):
        return None
    zone = campaign_zone(campaign)
    local = now.astimezone(zone)
    start = campaign.send_window_start or time.min
    days = _weekdays(campaign)
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        if day.weekday() not in days:
            continue
        opens = datetime.combine(day, start, tzinfo=zone)
        if opens > local:
            return opens
    return None
