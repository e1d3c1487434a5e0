"""django-q2 entry points of the agent; each one calls a service."""

from agent import services


def answer_message(message_id: int) -> str:
    """Enqueued after ingest commits a lead's message (see agent.apps / AGENT_HOOKS)."""
    return services.message_reply(message_id=message_id).status


def recover_stuck() -> dict[str, int]:
    """Periodic: answer conversations whose last lead message was never answered."""
    return services.conversations_recover_stuck().counts()


def reprocess_message(message_id: int, force: bool = False) -> str:
    """Enqueued by the admin's "Reprocess" actions: the LLM never runs in a web request."""
    return services.message_reprocess_by_id(message_id=message_id, force=force).status
