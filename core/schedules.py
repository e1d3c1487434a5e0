"""The platform's periodic tasks, kept in django-q2's Schedule table.

Declared here once and written on every `migrate`, so a deploy can never
forget one (the seeds' incident was a worker service nobody created).
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone


@dataclass(frozen=True)
class PeriodicTask:
    name: str
    func: str
    minutes: int = 1
    # Offset of the first run, in seconds. django-q2 schedules have minute
    # resolution; two one-minute schedules 30 s apart give a 30 s beat.
    offset_seconds: int = 0


PERIODIC_TASKS: list[PeriodicTask] = [
    PeriodicTask(name="heartbeat", func="core.tasks.heartbeat"),
    PeriodicTask(name="heartbeat (+30s)", func="core.tasks.heartbeat", offset_seconds=30),
    # The outbox sender's safety net: each run drains for OUTBOX_DRAIN_SECONDS
    # (< 30 s), so the two never overlap and a lost kick delays nothing long.
    PeriodicTask(name="outbox sweep", func="conversations.tasks.outbox_sweep"),
    PeriodicTask(
        name="outbox sweep (+30s)", func="conversations.tasks.outbox_sweep", offset_seconds=30
    ),
    # Webhook events whose processing task the broker lost.
    PeriodicTask(name="webhook sweep", func="channels.tasks.sweep_stuck_webhook_events"),
    # Lead messages stored but never answered (the worker died mid-answer):
    # each one is reprocessed once, 2 to 30 minutes after it arrived.
    PeriodicTask(name="agent stuck recovery", func="agent.tasks.recover_stuck"),
]


def ensure_schedules(**kwargs: Any) -> None:
    """Create or update every periodic task; remove the ones we no longer declare."""
    from django_q.models import Schedule

    now = timezone.now().replace(second=0, microsecond=0)
    declared = {task.name for task in PERIODIC_TASKS}
    for task in PERIODIC_TASKS:
        schedule, created = Schedule.objects.get_or_create(
            name=task.name,
            defaults={
                "func": task.func,
                "schedule_type": Schedule.MINUTES,
                "minutes": task.minutes,
                "repeats": -1,
                "next_run": now + timedelta(seconds=task.offset_seconds),
            },
        )
        if not created and (schedule.func, schedule.minutes) != (task.func, task.minutes):
            schedule.func = task.func
            schedule.schedule_type = Schedule.MINUTES
            schedule.minutes = task.minutes
            schedule.save(update_fields=["func", "schedule_type", "minutes"])
    ours = Q()
    for prefix in _OWN_PREFIXES:
        ours |= Q(func__startswith=prefix)
    Schedule.objects.filter(ours).exclude(name__in=declared).delete()


_OWN_PREFIXES = ("core.", "channels.", "conversations.", "campaigns.", "agent.")
