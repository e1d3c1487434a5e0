"""The checks behind GET /health, each returning a small dict."""

import logging
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection

from core import selectors

logger = logging.getLogger(__name__)


class Status(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


def check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.error("health: database unreachable: %s", exc)
        # A broken connection must not stick to this thread for the next request.
        connection.close_if_unusable_or_obsolete()
        return {"status": Status.DOWN, "error": str(exc).strip().splitlines()[0][:200]}
    return {"status": Status.OK, "vendor": connection.vendor}


def check_broker() -> dict[str, Any]:
    broker = settings.Q_BROKER
    if broker == "orm":
        # The ORM broker is the database checked above.
        return {"status": Status.OK, "broker": "orm"}
    import redis

    try:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2
        )
        client.ping()
    except redis.RedisError as exc:
        return {"status": Status.DEGRADED, "broker": broker, "error": str(exc)[:200]}
    return {"status": Status.OK, "broker": broker}


def check_worker(*, cluster: str | None = None) -> dict[str, Any]:
    age = selectors.heartbeat_age_seconds(cluster=cluster)
    if age is None:
        return {"status": Status.DEGRADED, "heartbeat_age_seconds": None, "error": "no heartbeat"}
    return {
        "status": Status.DEGRADED if selectors.heartbeat_stale(age) else Status.OK,
        "heartbeat_age_seconds": round(age, 1),
    }


def check_outbox() -> dict[str, Any]:
    backlog = selectors.outbox_backlog()
    oldest = backlog["oldest_pending_seconds"]
    late = oldest is not None and oldest > settings.OUTBOX_BACKLOG_WARN_SECONDS
    return {"status": Status.DEGRADED if late else Status.OK, **backlog}


def check_chatwoot() -> dict[str, Any] | None:
    """The mirror's backlog; None when Chatwoot is off and nothing waits for it."""
    backlog = selectors.chatwoot_backlog()
    if not backlog["configured"] and not backlog["pending"]:
        return None
    oldest = backlog["oldest_pending_seconds"]
    late = oldest is not None and oldest > settings.CHATWOOT_MIRROR_BACKLOG_WARN_SECONDS
    details = {key: value for key, value in backlog.items() if key != "configured"}
    return {"status": Status.DEGRADED if late else Status.OK, **details}


def health_report() -> dict[str, Any]:
    checks: dict[str, dict[str, Any]] = {"database": check_database()}
    if checks["database"]["status"] == Status.DOWN:
        # Everything else lives in the database; report it down without more noise.
        checks["broker"] = check_broker()
        return {"status": Status.DOWN, "checks": checks}
    checks["broker"] = check_broker()
    try:
        checks["worker"] = check_worker()
        # The agent's cluster answers leads; down, every lead waits (README: two clusters).
        checks["agent_worker"] = check_worker(cluster=settings.Q_AGENT_CLUSTER)
        checks["outbox"] = check_outbox()
        chatwoot = check_chatwoot()
        if chatwoot is not None:
            checks["chatwoot"] = chatwoot
    except DatabaseError as exc:
        # The database went away between the checks.
        return {
            "status": Status.DOWN,
            "checks": {**checks, "database": {"status": Status.DOWN, "error": str(exc)[:200]}},
        }
    overall = Status.OK
    if any(check["status"] != Status.OK for check in checks.values()):
        overall = Status.DEGRADED
    return {"status": overall, "checks": checks}
