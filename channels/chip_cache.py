"""The chip a webhook URL names, from a short-lived per-process cache.

Every delivery names its chip by (provider, key); reading the chip's ~40
columns was the second costliest step of intake. A process keeps the chips it
saw for `WEBHOOK_CHIP_CACHE_SECONDS` (5). A chip saved or deleted through the
ORM (the admin, the key rotation) drops this process's cache at once; other
processes see the change when their entry expires, within those seconds. An
unknown key is never cached: a scanner's guesses cost one query each and no
memory.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings

from channels.models import Chip

# Far above any real number of chips per deployment; a bound against surprises.
MAX_ENTRIES = 10_000

_entries: dict[tuple[str, str], tuple[float, Chip]] = {}
_lock = threading.Lock()


def chip_for_webhook(*, provider: str, chip_key: str) -> Chip | None:
    """The chip of `provider` whose webhook key is `chip_key`, or None."""
    now = time.monotonic()
    entry = _entries.get((provider, chip_key))
    if entry is not None and entry[0] > now:
        return entry[1]
    chip = Chip.objects.filter(provider=provider, webhook_key=chip_key).first()
    ttl = settings.WEBHOOK_CHIP_CACHE_SECONDS
    with _lock:
        if chip is None or ttl <= 0:
            _entries.pop((provider, chip_key), None)
        else:
            if len(_entries) >= MAX_ENTRIES:
                _entries.clear()
            _entries[(provider, chip_key)] = (now + ttl, chip)
    return chip


def chip_cache_clear(**kwargs: object) -> None:
    """Forget every cached chip (connected to Chip's post_save and post_delete)."""
    with _lock:
        _entries.clear()
