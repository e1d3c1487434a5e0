"""django-q2 entry points for channels; each is one call into channels.services."""

from channels import services


def process_webhook_event(event_id: int) -> str:
    return services.webhook_event_process(event_id=event_id)


def sweep_stuck_webhook_events() -> int:
    return services.webhook_events_requeue_stuck()
