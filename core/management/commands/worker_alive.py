from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.selectors import heartbeat_age_seconds


class Command(BaseCommand):
    help = (
        "Exit 0 when a django-q2 worker ran the heartbeat task recently, 1 otherwise. "
        "For container health checks and cron-style monitoring. Checks the cluster this "
        "environment runs (Q_CLUSTER_NAME: the agent's cluster's container checks itself) "
        "unless --cluster names one."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--max-age",
            type=int,
            default=settings.HEARTBEAT_STALE_SECONDS,
            help="Seconds after which the heartbeat counts as stale",
        )
        parser.add_argument("--cluster", default="", help="Cluster name (default: this one)")

    def handle(self, *args, max_age: int, cluster: str, **options) -> None:
        from django_q.conf import Conf

        cluster = cluster or Conf.CLUSTER_NAME
        age = heartbeat_age_seconds(cluster=cluster)
        if age is None:
            raise CommandError(
                f"no worker heartbeat recorded for {cluster}: is `manage.py qcluster` running?"
            )
        if age > max_age:
            raise CommandError(f"{cluster} worker heartbeat is {age:.0f}s old (limit {max_age}s)")
        self.stdout.write(f"{cluster} worker alive: last heartbeat {age:.0f}s ago")
