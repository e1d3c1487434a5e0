from django.core.management.base import BaseCommand, CommandParser

from conversations.retention import data_purge
from core.audit import audit_record
from core.models import AuditEntry


class Command(BaseCommand):
    help = (
        "Delete data older than the retention settings (RETENTION_*_DAYS): conversations and "
        "messages, the sent queue's delivery attempts, webhook events. Batched; also runs daily."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing"
        )
        parser.add_argument("--batch-size", type=int, default=None, help="Rows per transaction")

    def handle(self, *args, dry_run: bool, batch_size: int | None, **options) -> None:
        report = data_purge(dry_run=dry_run, batch_size=batch_size)
        verb = "would be deleted" if dry_run else "deleted"
        for label, count in report.counts.items():
            self.stdout.write(f"{label}: {count} {verb}")
        if dry_run:
            return
        self.stdout.write(
            f"{report.total} row(s) in {report.batches} batch(es); "
            f"longest batch {report.longest_batch_ms:.0f} ms"
        )
        audit_record(
            action="purge_old_data",
            source=AuditEntry.Source.COMMAND,
            actor_label="purge_old_data",
            count=report.total,
            detail=report.counts,
        )
