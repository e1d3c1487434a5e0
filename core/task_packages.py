"""django-q2 task packages built and pushed by the caller, for the hottest enqueue.

`async_task` costs about 0.7 ms of CPU per call with the ORM broker (a broker
object whose constructor runs `close_old_connections`, so the next query pays
a health check; the task row through the ORM; a humanhash name; the
`pre_enqueue` signal; an "Enqueued" log line) and 0.4 ms with Redis. A
webhook delivery pays it on every request. `task_package` builds the same
signed package for a fraction of that, so the caller can write it itself: the
webhook's event and its task row in one SQL statement (ORM broker), or one
RPUSH on the pooled client (Redis). A test holds the package to what
`async_task` builds.

Only for tasks whose queueing the caller controls end to end; everything
else goes through `async_task`, which honours django-q2's sync mode and
signals.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

from django.core import signing
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.signing import PickleSerializer


def task_package(
    func: str, *args: Any, cluster: str, name: str, group: str | None = None, save: bool = True
) -> str:
    """The signed package `async_task(func, *args, cluster=…, group=…, save=…)` would push.

    `name` is what the admin's failed-task list shows (django-q2 would pick
    three random words); it is cut to the 100 characters the Task row keeps.
    """
    task: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "name": name[:100],
        "func": func,
        "args": args,
        "cluster": cluster,
        "save": save,
    }
    if group is not None:
        task["group"] = group
    # The overrides async_task applies from the cluster's settings.
    if Conf.CACHED:
        task["cached"] = Conf.CACHED
    if Conf.ACK_FAILURES:
        task["ack_failure"] = Conf.ACK_FAILURES
    task["kwargs"] = {}
    task["started"] = timezone.now()
    # SignedPackage.dumps builds a new signer (and reads settings) for every call.
    return _signer().sign_object(task, serializer=PickleSerializer, compress=Conf.COMPRESSED)


@functools.cache
def _signer() -> signing.TimestampSigner:
    """The signer SignedPackage.dumps uses: django-q2's key and prefix as salt."""
    return signing.TimestampSigner(key=Conf.SECRET_KEY, salt=Conf.PREFIX)


def task_push(package: str, cluster: str) -> None:
    """Hand a package from `task_package` to `cluster`'s broker, as `async_task` does."""
    get_broker(cluster).enqueue(package)


def task_packages_direct() -> bool:
    """False in django-q2's sync mode, where a task must run in the caller (tests)."""
    return not Conf.SYNC
