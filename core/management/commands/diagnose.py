"""What the seeds' diagnose_system.sh gathered, from inside the platform.

Health checks, worker heartbeat and schedules, outbox and sends, chips, the
agent, handoffs, open alerts, the last task failures, machine resources and
the configuration (which integrations are set, never their secrets). Read-only.
"""

import os
import platform
import shutil
from datetime import timedelta
from typing import Any

import django
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from core import dashboard
from core.health import health_report


class Command(BaseCommand):
    help = "Print a one-screen diagnosis of the platform (read-only): diagnose_system.sh, built in."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Machine-readable output")

    def handle(self, *args, json: bool = False, **options) -> None:
        report = diagnosis()
        if json:
            import json as json_module

            self.stdout.write(json_module.dumps(report, indent=2, default=str, ensure_ascii=False))
            return
        for section, values in report.items():
            self.stdout.write(self.style.MIGRATE_HEADING(section))
            if isinstance(values, list):
                for row in values or ["—"]:
                    self.stdout.write(f"  {row}")
            else:
                for key, value in values.items():
                    self.stdout.write(f"  {key}: {value}")


def diagnosis() -> dict[str, Any]:
    from django_q.models import Failure, Schedule

    now = timezone.now()
    snapshot = dashboard.dashboard_snapshot()
    health = health_report()
    disk = shutil.disk_usage(settings.BASE_DIR)
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return {
        "health": {
            "status": health["status"],
            **{name: check["status"] for name, check in health["checks"].items()},
        },
        "worker": {
            "cluster": settings.Q_CLUSTER["name"],
            "broker": settings.Q_BROKER,
            "heartbeat_age_s": snapshot.worker["heartbeat_age_seconds"],
            "stale": snapshot.worker["stale"],
        },
        "schedules": [
            f"{s.name}: next {timezone.localtime(s.next_run):%d/%m %H:%M:%S}"
            for s in Schedule.objects.order_by("name")
        ],
        "outbox": {
            "pending": snapshot.outbox["pending_messages"],
            "oldest_pending_s": snapshot.outbox["oldest_pending_seconds"],
            "failed_24h": snapshot.outbox["failed_24h"],
            "sent_24h": sum(snapshot.sends["series"]["sent"]),
        },
        "chips": [
            f"{row['chip'].name} [{row['chip'].provider}] {row['status']} "
            f"circuit={row['circuit']} quality={row['quality']} "
            f"sent today {row['sent_today']}/{row['cap']}"
            + (f" last error: {row['last_error'][:80]}" if row["last_error"] else "")
            for row in snapshot.chips
        ],
        "agent": {
            "waiting_conversations": snapshot.awaiting["conversations"],
            "oldest_waiting_s": snapshot.awaiting["oldest_seconds"],
            "p50_s": snapshot.agent["p50_seconds"],
            "p95_s": snapshot.agent["p95_seconds"],
            "runs_60min": snapshot.agent["runs"],
            "errors_60min": snapshot.agent["errors"],
            "handoffs_open": snapshot.handoffs["open"],
        },
        "chatwoot mirror": {
            "configured": snapshot.chatwoot["configured"],
            "waiting": snapshot.chatwoot["pending"],
            "oldest_waiting_s": snapshot.chatwoot["oldest_pending_seconds"],
            "refused_24h": snapshot.chatwoot["failed_24h"],
            "backing_off_until": snapshot.chatwoot["retry_at"],
        },
        "alerts": [
            f"[{alert.status}] {alert.title} "
            f"(since {timezone.localtime(alert.opened_at):%d/%m %H:%M})"
            for alert in snapshot.alerts
        ],
        "task failures (24 h)": [
            f"{timezone.localtime(f.stopped):%d/%m %H:%M} {f.func}: {str(f.result)[:100]}"
            for f in Failure.objects.filter(stopped__gte=now - timedelta(hours=24)).order_by(
                "-stopped"
            )[:10]
        ],
        "configuration": {
            "django": django.get_version(),
            "python": platform.python_version(),
            "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
            "debug": settings.DEBUG,
            "time_zone": settings.TIME_ZONE,
            "language": settings.LANGUAGE_CODE,
            # Whether each integration is set, never its value.
            "openai": bool(settings.OPENAI_API_KEY),
            "chatwoot": snapshot.chatwoot["configured"],
            "slack": bool(settings.SLACK_WEBHOOK_URL),
        },
        "machine": {
            "host": platform.node(),
            "load_average": " ".join(f"{x:.2f}" for x in load) if load[0] != "?" else "?",
            "disk_free": f"{disk.free / 2**30:.1f} GiB of {disk.total / 2**30:.1f} GiB",
            "cpus": os.cpu_count(),
        },
    }
