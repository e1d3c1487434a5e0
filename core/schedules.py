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
    # Run by the agent's cluster (settings.Q_AGENT_CLUSTER) instead of the
    # default one: its heartbeat, and the recovery whose turns call the model.
    agent: bool = False


PERIODIC_TASKS: list[PeriodicTask] = [
    PeriodicTask(name="heartbeat", func="core.tasks.heartbeat"),
    PeriodicTask(name="heartbeat (+30s)", func="core.tasks.heartbeat", offset_seconds=30),
    # Each cluster beats for itself: a dead agent cluster answers nobody.
    PeriodicTask(name="agent heartbeat", func="core.tasks.heartbeat", agent=True),
    PeriodicTask(
        name="agent heartbeat (+30s)", func="core.tasks.heartbeat", offset_seconds=30, agent=True
    ),
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
    PeriodicTask(name="agent stuck recovery", func="agent.tasks.recover_stuck", agent=True),
    # Alert rules: open what fires, resolve what stopped (core/alerts.py).
    PeriodicTask(name="alerts", func="core.tasks.alerts_evaluate"),
    # Retention (RETENTION_* settings): once a day, in bounded batches.
    PeriodicTask(name="purge old data", func="conversations.tasks.purge_old_data", minutes=24 * 60),
    # Scheduled campaigns whose time came, due follow-ups (campaigns' and agent
    # profiles'), campaigns that finished.
    PeriodicTask(name="campaigns tick", func="campaigns.tasks.campaigns_tick"),
    # Human takeovers quiet past HUMAN_TAKEOVER_QUIET_MINUTES return to the agent;
    # handoffs nobody took are notified again.
    PeriodicTask(name="handoff sweep", func="conversations.tasks.handoff_sweep"),
    # Writes to Chatwoot that are due: retries after a failure (one probe per
    # backoff window while Chatwoot is down) and kicks the broker lost.
    PeriodicTask(name="chatwoot mirror sweep", func="conversations.tasks.chatwoot_mirror_sweep"),
]


def ensure_schedules(**kwargs: Any) -> None:
    """Create or update every periodic task; remove the ones we no longer declare."""
    from django.conf import settings
    from django_q.models import Schedule

    now = timezone.now().replace(second=0, microsecond=0)
    declared = {task.name for task in PERIODIC_TASKS}
    for task in PERIODIC_TASKS:
        # None: the default cluster's scheduler runs it (django-q2's convention).
        cluster = settings.Q_AGENT_CLUSTER if task.agent else None
        schedule, created = Schedule.objects.get_or_create(
            name=task.name,
            defaults={
                "func": task.func,
                "schedule_type": Schedule.MINUTES,
                "minutes": task.minutes,
                "repeats": -1,
                "next_run": now + timedelta(seconds=task.offset_seconds),
                "cluster": cluster,
            },
        )
        declared_as = (task.func, task.minutes, cluster)
        if not created and (schedule.func, schedule.minutes, schedule.cluster) != declared_as:
            schedule.func = task.func
            schedule.schedule_type = Schedule.MINUTES
            schedule.minutes = task.minutes
            schedule.cluster = cluster
            schedule.save(update_fields=["func", "schedule_type", "minutes", "cluster"])
    ours = Q()
    for prefix in _OWN_PREFIXES:
        ours |= Q(func__startswith=prefix)
    Schedule.objects.filter(ours).exclude(name__in=declared).delete()


_OWN_PREFIXES = ("core.", "channels.", "conversations.", "campaigns.", "agent.")
