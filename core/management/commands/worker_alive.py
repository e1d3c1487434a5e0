from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.selectors import heartbeat_age_seconds


class Command(BaseCommand):
    help = (
        "Exit 0 when a django-q2 worker ran the heartbeat task recently, 1 otherwise. "
        "For container health checks and cron-style monitoring."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--max-age",
            type=int,
            default=settings.HEARTBEAT_STALE_SECONDS,
            help="Seconds after which the heartbeat counts as stale",
        )

    def handle(self, *args, max_age: int, **options) -> None:
        age = heartbeat_age_seconds()
        if age is None:
            raise CommandError("no worker heartbeat recorded: is `manage.py qcluster` running?")
        if age > max_age:
            raise CommandError(f"worker heartbeat is {age:.0f}s old (limit {max_age}s)")
        self.stdout.write(f"worker alive: last heartbeat {age:.0f}s ago")
