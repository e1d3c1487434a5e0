"""Chip pacing rules: warm-up cap, send window in the chip's zone, jittered interval."""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from channels import pacing
from tests.factories.channels import ChipFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("started", "today", "cap"),
    [
        (None, date(2026, 3, 1), 200),
        (date(2026, 3, 1), date(2026, 3, 1), 20),
        (date(2026, 3, 1), date(2026, 3, 5), 100),
        (date(2026, 3, 1), date(2026, 3, 10), 200),
        (date(2026, 3, 1), date(2026, 4, 1), 200),
    ],
)
def test_the_daily_cap_ramps_linearly_over_the_warm_up(started, today, cap):
    chip = ChipFactory.build(daily_cap=200, warmup_days=10, warmup_started_on=started)
    assert pacing.chip_daily_cap(chip, today=today) == cap


def test_the_send_window_is_read_in_the_chips_time_zone():
    chip = ChipFactory.build(
        time_zone="America/Manaus", send_window_start=time(9), send_window_end=time(18)
    )
    manaus = ZoneInfo("America/Manaus")
    # 08:30 in Manaus is 09:30 in São Paulo: still closed for this chip.
    early = datetime(2026, 3, 2, 8, 30, tzinfo=manaus)
    assert pacing.chip_window_opens_at(chip, now=early) == datetime(2026, 3, 2, 9, 0, tzinfo=manaus)
    assert pacing.chip_window_opens_at(chip, now=early + timedelta(hours=1)) is None
    late = datetime(2026, 3, 2, 18, 0, tzinfo=manaus)
    assert pacing.chip_window_opens_at(chip, now=late) == datetime(2026, 3, 3, 9, 0, tzinfo=manaus)


def test_the_next_proactive_send_waits_the_interval_plus_at_most_the_jitter():
    chip = ChipFactory.build(min_interval_seconds=30, jitter_seconds=15)
    after = datetime(2026, 3, 2, 12, 0, tzinfo=ZoneInfo("UTC"))
    for _ in range(50):
        wait = (pacing.chip_next_proactive_at(chip, after=after) - after).total_seconds()
        assert 30 <= wait <= 45


def test_purpose_permissions():
    chip = ChipFactory.build(can_prospect=False, can_follow_up=True)
    assert pacing.chip_purpose_block(chip, purpose="campaign")
    assert pacing.chip_purpose_block(chip, purpose="follow_up") is None
    assert pacing.chip_purpose_block(chip, purpose="reply") is None
