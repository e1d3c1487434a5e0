"""django-q2 entry points of the core app. Each one calls a service."""

from core.services import heartbeat_record


def heartbeat() -> str:
    beat = heartbeat_record()
    return beat.beat_at.isoformat()
