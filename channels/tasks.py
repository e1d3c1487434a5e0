"""django-q2 entry points for channels; each is one call into channels.services."""

from channels import services


def process_webhook_event(event_id: int) -> str:
    return services.webhook_event_process(event_id=event_id)


def process_webhook_delivery(chip_id: int, dedupe_key: str) -> str:
    return services.webhook_delivery_process(chip_id=chip_id, dedupe_key=dedupe_key)


def sweep_stuck_webhook_events() -> int:
    return services.webhook_events_requeue_stuck()
