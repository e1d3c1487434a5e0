"""Per-chip intake limits: deliveries per minute and bytes stored per hour.

A chip key that leaks must not let its holder fill the database: past either
limit the webhook answers 429 with `Retry-After`, before anything is stored,
and the provider delivers again later (nothing accepted is lost). The defaults
are far above what a real chip sends; 0 turns a limit off.

The counters are fixed windows kept in Redis (`WEBHOOK_LIMIT_BACKEND=redis`,
shared by every web process) or in this process's memory (`memory`, the
default without a Redis broker: each web process counts on its own, so the
effective limit is per process). A Redis outage never refuses a delivery: the
limit is a bound on damage, not a gate.

With Redis, a round trip per delivery was about 6 % of a delivery's
instructions for a count that matters only near a limit. So while a chip is
far from its limits (its shared counts under half of each), a process counts
deliveries itself and sends them in one call at most every `SYNC_SECONDS`,
or sooner once a twentieth of either limit is unsent. Past half of a limit every delivery is
counted in Redis, so a limit is exceeded by at most what the other processes
have not sent yet: a twentieth of it per process (a process sends what it
holds with its next delivery a second or more after its last call).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings

logger = logging.getLogger(__name__)

RATE_WINDOW_SECONDS = 60
STORAGE_WINDOW_SECONDS = 60 * 60

SYNC_SECONDS = 1.0
# Counted in this process while the shared count is under this share of its
# limit, with at most UNSENT_SHARE of the limit not yet sent.
LOCAL_SHARE = 0.5
UNSENT_SHARE = 0.05


@dataclass(frozen=True)
class Refusal:
    """Why a delivery was refused, and when the provider may try again."""

    reason: str
    retry_after: int


def intake_admit(*, chip_id: int, size: int) -> Refusal | None:
    """Count one delivery of `size` bytes for the chip; a Refusal when it is over a limit."""
    rate_limit = settings.WEBHOOK_RATE_LIMIT_PER_MINUTE
    byte_budget = settings.WEBHOOK_STORAGE_BUDGET_BYTES_PER_HOUR
    if rate_limit <= 0 and byte_budget <= 0:
        return None
    now = time.time()
    rate_window = int(now // RATE_WINDOW_SECONDS)
    byte_window = int(now // STORAGE_WINDOW_SECONDS)
    counts = _backend().add(
        chip_id, rate_window, byte_window, size, limits=(rate_limit, byte_budget), now=now
    )
    if counts is None:
        return None
    deliveries, stored = counts
    if rate_limit > 0 and deliveries > rate_limit:
        return Refusal(
            f"more than {rate_limit} deliveries per minute for this chip",
            _seconds_left(now, RATE_WINDOW_SECONDS),
        )
    if byte_budget > 0 and stored > byte_budget:
        # A refused body is not stored: give its bytes back to the budget.
        _backend().give_back(chip_id, byte_window, size)
        return Refusal(
            f"more than {byte_budget} bytes per hour stored for this chip",
            _seconds_left(now, STORAGE_WINDOW_SECONDS),
        )
    return None


def _seconds_left(now: float, window: int) -> int:
    return max(1, math.ceil(window - now % window))


class _MemoryCounters:
    """Fixed windows in this process; old windows are dropped as time moves on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: tuple[int, int] = (0, 0)
        self._deliveries: dict[int, int] = {}
        self._bytes: dict[int, int] = {}

    def add(
        self,
        chip_id: int,
        rate_window: int,
        byte_window: int,
        size: int,
        *,
        limits: tuple[int, int],
        now: float,
    ) -> tuple[int, int] | None:
        with self._lock:
            if rate_window != self._windows[0]:
                self._deliveries.clear()
            if byte_window != self._windows[1]:
                self._bytes.clear()
            self._windows = (rate_window, byte_window)
            deliveries = self._deliveries[chip_id] = self._deliveries.get(chip_id, 0) + 1
            stored = self._bytes[chip_id] = self._bytes.get(chip_id, 0) + size
        return deliveries, stored

    def give_back(self, chip_id: int, byte_window: int, size: int) -> None:
        with self._lock:
            if byte_window == self._windows[1] and chip_id in self._bytes:
                self._bytes[chip_id] -= size

    def reset(self) -> None:
        with self._lock:
            self._deliveries.clear()
            self._bytes.clear()


# KEYS: the delivery count's key, the stored bytes' key; ARGV: their lifetimes,
# the deliveries and the bytes to add. One command instead of a pipeline of
# four: redis-py packs and parses each command in Python.
_ADD = """
local deliveries = redis.call('INCRBY', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[1])
local stored = redis.call('INCRBY', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return {deliveries, stored}
"""


@dataclass
class _Tally:
    """One chip's counts in the current windows, as this process knows them."""

    windows: tuple[int, int]
    shared: list[int] = field(default_factory=lambda: [0, 0])  # at the last call to Redis
    unsent: list[int] = field(default_factory=lambda: [0, 0])
    sent_at: float = -math.inf

    def may_wait(self, limits: tuple[int, int], now: float) -> bool:
        """True while this chip is far enough from its limits to count here for now."""
        if now - self.sent_at >= SYNC_SECONDS:
            return False
        for limit, shared, unsent in zip(limits, self.shared, self.unsent, strict=True):
            if limit > 0 and (
                shared + unsent >= limit * LOCAL_SHARE or unsent > limit * UNSENT_SHARE
            ):
                return False
        return True


class _RedisCounters:
    """INCRBY on per-window keys that expire with their window, in one script call.

    Deliveries far from a limit are counted here first and sent in batches
    (the module's docstring says how far and for how long).
    """

    def __init__(self, url: str) -> None:
        import redis

        # Short timeouts: a slow Redis must not slow the intake down.
        self._client = redis.Redis.from_url(
            url, socket_timeout=0.25, socket_connect_timeout=0.25, health_check_interval=30
        )
        self._add = self._client.register_script(_ADD)
        self._lock = threading.Lock()
        self._tallies: dict[int, _Tally] = {}

    @staticmethod
    def _keys(chip_id: int, rate_window: int, byte_window: int) -> tuple[str, str]:
        return (
            f"sdr:intake:n:{chip_id}:{rate_window}",
            f"sdr:intake:b:{chip_id}:{byte_window}",
        )

    def add(
        self,
        chip_id: int,
        rate_window: int,
        byte_window: int,
        size: int,
        *,
        limits: tuple[int, int],
        now: float,
    ) -> tuple[int, int] | None:
        import redis

        windows = (rate_window, byte_window)
        with self._lock:
            tally = self._tallies.get(chip_id)
            if tally is None or tally.windows != windows:
                tally = self._tallies[chip_id] = _tally_for(windows, tally)
            tally.unsent[0] += 1
            tally.unsent[1] += size
            if tally.may_wait(limits, now):
                return tally.shared[0] + tally.unsent[0], tally.shared[1] + tally.unsent[1]
            deliveries, stored = tally.unsent
            tally.unsent = [0, 0]
            tally.sent_at = now
        count_key, bytes_key = self._keys(chip_id, rate_window, byte_window)
        try:
            counts = self._add(
                keys=[count_key, bytes_key],
                args=[RATE_WINDOW_SECONDS * 2, STORAGE_WINDOW_SECONDS * 2, deliveries, stored],
            )
        except redis.RedisError as exc:
            logger.warning("intake limits: Redis unavailable, not limiting: %s", exc)
            with self._lock:
                # Sent again with the next call that reaches Redis.
                tally.unsent[0] += deliveries
                tally.unsent[1] += stored
            return None
        shared = [int(counts[0]), int(counts[1])]
        with self._lock:
            tally.shared = shared
        return shared[0], shared[1]

    def give_back(self, chip_id: int, byte_window: int, size: int) -> None:
        import redis

        with self._lock:
            tally = self._tallies.get(chip_id)
            if tally is not None and tally.windows[1] == byte_window:
                tally.shared[1] -= size
        _, bytes_key = self._keys(chip_id, 0, byte_window)
        try:
            self._client.decrby(bytes_key, size)
        except redis.RedisError as exc:
            logger.warning("intake limits: Redis unavailable: %s", exc)

    def reset(self) -> None:
        with self._lock:
            self._tallies.clear()
        for key in self._client.scan_iter("sdr:intake:*"):
            self._client.delete(key)


def _tally_for(windows: tuple[int, int], previous: _Tally | None) -> _Tally:
    """A chip's tally for new windows: the hour's bytes carry over a new minute."""
    tally = _Tally(windows)
    if previous is not None and previous.windows[1] == windows[1]:
        tally.shared[1] = previous.shared[1]
        tally.unsent[1] = previous.unsent[1]
    return tally


_backends: dict[tuple[str, str], _MemoryCounters | _RedisCounters] = {}
_backends_lock = threading.Lock()


def _backend() -> _MemoryCounters | _RedisCounters:
    """One counter store per configuration (tests switch the backend with settings)."""
    config = (settings.WEBHOOK_LIMIT_BACKEND, settings.REDIS_URL)
    backend = _backends.get(config)
    if backend is None:
        with _backends_lock:
            backend = _backends.get(config)
            if backend is None:
                backend = (
                    _RedisCounters(settings.REDIS_URL)
                    if config[0] == "redis"
                    else _MemoryCounters()
                )
                _backends[config] = backend
    return backend


def intake_limits_reset() -> None:
    """Forget every count (tests, and ops after raising a limit by hand)."""
    _backend().reset()
