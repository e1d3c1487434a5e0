"""django-q2 entry points of the conversations app. Each one calls a service."""

import os

from django.conf import settings

from conversations.outbox import outbox_drain


def outbox_send_now() -> dict[str, int]:
    """The kick enqueued after a message is queued: send what is ready, then stop."""
    return outbox_drain(max_seconds=0).as_dict()


def outbox_sweep(max_seconds: float | None = None) -> dict[str, int]:
    """The periodic sender: recovers expired leases and drains paced chips for a while."""
    budget = settings.OUTBOX_DRAIN_SECONDS if max_seconds is None else max_seconds
    # The worker's pid in the task result tells ops (and tests) who drained what.
    return {**outbox_drain(max_seconds=budget).as_dict(), "pid": os.getpid()}
