import re
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from agent.reprocess import reprocess_failed
from core.models import AuditEntry
from core.phones import to_e164

_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str) -> timedelta:
    """'24h', '30m', '2d' -> a timedelta."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhd])\s*", value or "")
    if not match:
        raise CommandError(f"--since wants a number and a unit (m, h, d), e.g. 24h; got {value!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class Command(BaseCommand):
    help = (
        "Answer the lead messages the agent left without a reply (the reprocess runbook's "
        "batch option). Messages already answered are never answered twice."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", default="24h", help="How far back to look: 30m, 24h, 2d")
        parser.add_argument("--phone", help="Only this lead (any format, e.g. 5511999999999)")
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would be reprocessed; change nothing"
        )
        parser.add_argument("--limit", type=int, default=500)

    def handle(
        self, *args, since: str, phone: str | None, dry_run: bool, limit: int, **options
    ) -> None:
        period = parse_since(since)
        if phone:
            try:
                phone = to_e164(phone)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        report = reprocess_failed(since=period, phone=phone, dry_run=dry_run, limit=limit)
        if not dry_run:
            report.audit(
                action="reprocess_failed",
                source=AuditEntry.Source.COMMAND,
                actor_label="reprocess_failed",
                detail={"since": since, "phone": phone or ""},
            )
        for message, result in report.results:
            when = timezone.localtime(message.created_at).strftime("%d/%m %H:%M")
            lead = message.conversation.lead
            outcome = "would reprocess" if result is None else result.status
            detail = f" ({result.detail})" if result and result.detail else ""
            self.stdout.write(
                f"message {message.pk} {when} {lead.phone or lead.pk}: "
                f"{message.body[:60]!r} -> {outcome}{detail}"
            )
        verb = "would be reprocessed" if dry_run else "reprocessed"
        self.stdout.write(
            f"{report.found} unanswered message(s) since {since} {verb}: {report.counts()}"
        )
