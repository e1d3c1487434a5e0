from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from agent.recovery import conversations_recover_stuck
from core.models import AuditEntry


class Command(BaseCommand):
    help = (
        "Reprocess conversations stuck on an unanswered lead message (2 to 30 minutes old), "
        "each message at most once. The periodic task runs the same every minute."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="List the stuck conversations; change nothing"
        )

    def handle(self, *args, dry_run: bool, **options) -> None:
        report = conversations_recover_stuck(dry_run=dry_run)
        if not dry_run:
            report.audit(
                action="recover_stuck",
                source=AuditEntry.Source.COMMAND,
                actor_label="recover_stuck",
            )
        for message, result in report.results:
            when = timezone.localtime(message.created_at).strftime("%d/%m %H:%M")
            conversation = message.conversation
            outcome = "stuck" if result is None else result.status
            self.stdout.write(
                f"conversation {conversation.pk} ({conversation.lead.phone or '-'}) "
                f"message {message.pk} {when} step={conversation.flow_step or '-'}: {outcome}"
            )
        self.stdout.write(f"{report.found} stuck conversation(s): {report.counts()}")
