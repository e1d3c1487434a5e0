from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.selectors import campaign_progress
from campaigns.services import CONTROLS, CampaignError, campaign_control
from core.models import AuditEntry


class Command(BaseCommand):
    help = (
        "Control a campaign: start (or schedule), pause, resume, cancel, or show its status. "
        "The same services as the admin's buttons; every change is audited."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=[*CONTROLS, "status"])
        parser.add_argument("campaign_id", type=int)
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would happen; change nothing"
        )

    def handle(self, *args, action: str, campaign_id: int, dry_run: bool, **options) -> None:
        campaign = Campaign.objects.filter(pk=campaign_id).first()
        if campaign is None:
            raise CommandError(f"campaign {campaign_id} does not exist")
        if action != "status":
            try:
                result = campaign_control(
                    campaign=campaign,
                    action=action,
                    source=AuditEntry.Source.COMMAND,
                    actor_label="manage.py campaign",
                    dry_run=dry_run,
                )
            except CampaignError as exc:
                raise CommandError(str(exc)) from exc
            prefix = "[dry run] " if dry_run else ""
            self.stdout.write(f"{prefix}{campaign.name}: {result.message}")
            for reason, count in result.skipped.items():
                self.stdout.write(f"  skipped ({reason}): {count}")
            campaign.refresh_from_db()
        self._status(campaign)

    def _status(self, campaign: Campaign) -> None:
        p = campaign_progress(campaign)
        self.stdout.write(
            f"campaign {campaign.pk} {campaign.name!r}: {p.status_label}"
            + (f" ({p.paused_reason})" if p.paused_reason else "")
        )
        self.stdout.write(
            f"  total {p.total} | pending {p.pending} | queued {p.queued} | sent {p.sent} | "
            f"delivered {p.delivered} | read {p.read} | replied {p.replied} | failed {p.failed} "
            f"| cancelled {p.cancelled} | skipped {p.skipped} | opted out {p.opted_out}"
        )
        for reason, count in p.skipped_by_reason.items():
            self.stdout.write(f"  skipped {reason}: {count}")
        finish = (
            timezone.localtime(p.estimated_finish).strftime("%d/%m/%Y %H:%M")
            if p.estimated_finish
            else "-"
        )
        self.stdout.write(
            f"  {p.percent_done}% done, reply rate {p.reply_rate:.1%}, "
            f"{p.sends_per_hour}/h now, estimated finish {finish}"
        )
