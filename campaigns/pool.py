"""A campaign's chip pool: which chips may send for it and how much each can take."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from campaigns.models import Campaign
from channels import pacing
from channels.models import Chip
from channels.quarantine import NOT_SENDING_STATUSES


def chip_usable_for(campaign: Campaign, chip: Chip) -> bool:
    """May `chip` send this campaign's messages at all (not now: pacing decides that)?"""
    if chip.status in (*NOT_SENDING_STATUSES, Chip.Status.RESTRICTED):
        return False
    if campaign.kind == Campaign.Kind.FOLLOW_UP:
        return chip.can_follow_up
    return chip.can_prospect


def pool_usable_chips(campaign: Campaign, *, exclude: Iterable[int] = ()) -> list[Chip]:
    skip = set(exclude)
    return [
        chip
        for chip in campaign.chips.order_by("pk")
        if chip.pk not in skip and chip_usable_for(campaign, chip)
    ]


def chip_remaining_today(chip: Chip, *, now: datetime) -> int:
    """Sends this chip may still make today: its (warm-up) cap minus what it sent."""
    today = now.astimezone(pacing.chip_zone(chip)).date()
    cap = pacing.chip_daily_cap(chip, today=today)
    return max(0, cap - pacing.chip_sent_today(chip, now=now))


def pool_weights(chips: Sequence[Chip], *, now: datetime) -> list[int]:
    """Each chip's share: its remaining capacity today, or its daily cap when all are spent."""
    weights = [chip_remaining_today(chip, now=now) for chip in chips]
    if not any(weights):
        weights = [max(1, chip.daily_cap) for chip in chips]
    return weights


def spread(count: int, weights: Sequence[int]) -> list[int]:
    """Indexes into `weights` for `count` items, interleaved in proportion to the weights.

    Smooth weighted round-robin: every prefix of the result is as close to the
    proportions as it can be, so the first messages out already use every chip.
    """
    total = sum(weights)
    if not weights or total <= 0:
        raise ValueError("no capacity to spread over")
    current = [0] * len(weights)
    out = []
    for _ in range(count):
        for i, weight in enumerate(weights):
            current[i] += weight
        best = max(range(len(weights)), key=current.__getitem__)
        current[best] -= total
        out.append(best)
    return out
