"""django-q2 entry points of the core app. Each one calls a service."""

from core.alerts import alerts_evaluate as alerts_evaluate_rules
from core.services import heartbeat_record


def heartbeat() -> str:
    """Periodic, on each cluster: records the beat under the cluster that ran it."""
    from django_q.conf import Conf

    beat = heartbeat_record(cluster=Conf.CLUSTER_NAME)
    return beat.beat_at.isoformat()


def alerts_evaluate() -> str:
    """Periodic, on the default cluster: every alert rule once.

    The worker running it is alive, so its cluster beats first: at a
    cluster's first start this task can run before the heartbeat task and
    would report its own cluster as never having run (an alert on every
    deploy, resolved a minute later).
    """
    heartbeat()
    return str(alerts_evaluate_rules())
