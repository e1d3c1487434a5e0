"""Campaign operations: start, enqueue, pause, resume, cancel, complete, and their seams.

The admin actions, the `campaign` command and the scheduler's task are thin
doors to these functions. Turning an audience into queued outbound messages
is done in bulk: a fixed number of queries whatever the audience size. A
running campaign keeps CAMPAIGN_QUEUE_AHEAD first messages queued per pool
chip; the rest of its audience stays pending and the scheduler's tick queues
more as the chips send (`campaign_top_up`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from django.utils.translation import gettext, ngettext

from campaigns.models import Campaign, CampaignRecipient
from campaigns.pool import pool_usable_chips, pool_weights, spread
from campaigns.rendering import lead_variables, recipient_text, template_variants
from campaigns.windows import campaign_window_opens_at
from channels.models import Chip
from conversations.models import Conversation, Handoff, Lead, Message
from conversations.outbox import PRIORITY_BY_PURPOSE, Verdict, outbox_kick
from core import bulk
from core.alerts import alert_raise
from core.audit import audit_record
from core.brokers import enqueue_nudge
from core.models import AuditEntry

logger = logging.getLogger(__name__)

ACTIVE = (Campaign.Status.RUNNING, Campaign.Status.SCHEDULED)
FINISHED = (Campaign.Status.COMPLETED, Campaign.Status.CANCELLED)
UNSENT = (CampaignRecipient.Status.PENDING, CampaignRecipient.Status.QUEUED)


class CampaignError(Exception):
    """A control that cannot apply to the campaign as it is (a translated message)."""


@dataclass
class ControlResult:
    """What a control did (or, with dry_run, would do), for the admin and the command."""

    campaign: Campaign
    action: str
    status: str
    queued: int = 0
    waiting: int = 0  # pending recipients the tick queues as the chips send
    cancelled: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    message: str = ""


def _first_purpose(campaign: Campaign) -> str:
    if campaign.kind == Campaign.Kind.FOLLOW_UP:
        return Message.Purpose.FOLLOW_UP
    return Message.Purpose.CAMPAIGN


def _lock(campaign: Campaign) -> Campaign:
    return Campaign.objects.select_for_update().get(pk=campaign.pk)


# --- Enqueueing --------------------------------------------------------------------------


def _skip_rules(campaign: Campaign, *, now: datetime) -> list[tuple[str, Q]]:
    reason = CampaignRecipient.SkipReason
    recently = now - timedelta(days=settings.CAMPAIGN_RECONTACT_DAYS)
    return [
        (reason.NO_PHONE, Q(lead__phone__isnull=True) | Q(lead__phone="")),
        (reason.OPTED_OUT, Q(lead__opted_out=True)),
        (
            reason.HUMAN_CONTROLLED,
            Q(
                Exists(
                    Conversation.objects.filter(
                        lead=OuterRef("lead"),
                        status=Conversation.Status.OPEN,
                        controlled_by=Conversation.ControlledBy.HUMAN,
                    )
                )
            ),
        ),
        (
            reason.OPEN_HANDOFF,
            Q(
                Exists(
                    Handoff.objects.filter(
                        conversation__lead=OuterRef("lead"),
                        status__in=[Handoff.Status.OPEN, Handoff.Status.ACCEPTED],
                    )
                )
            ),
        ),
        (
            reason.RECENTLY_CONTACTED,
            Q(
                Exists(
                    CampaignRecipient.objects.filter(
                        lead=OuterRef("lead"), message__sent_at__gte=recently
                    ).exclude(campaign=campaign)
                )
            ),
        ),
    ]


def _pending(campaign: Campaign | OuterRef) -> QuerySet[CampaignRecipient]:
    return CampaignRecipient.objects.filter(
        campaign=campaign, status=CampaignRecipient.Status.PENDING
    )


# Recipient ids are bigints: a bound past every one of them.
_NO_BOUND = 2**63 - 1


def _batch_bound(campaign: Campaign, *, room: int) -> int | None:
    """The id of the last of the first `room` pending recipients (import order).

    None when there is no room. A bound rather than a slice, so the skip
    rules can update the batch and the staged SQL can join on it.
    """
    if room <= 0:
        return None
    last = _pending(campaign).order_by("pk").values_list("pk", flat=True)[room - 1 : room]
    return last[0] if last else _NO_BOUND


def _queue_room(campaign: Campaign, chips: list[Chip]) -> int:
    """How many more first messages the pool should have queued (CAMPAIGN_QUEUE_AHEAD)."""
    # At least one per chip: 0 would never queue anything.
    target = max(1, settings.CAMPAIGN_QUEUE_AHEAD) * len(chips)
    room = target - campaign.recipients.filter(status=CampaignRecipient.Status.QUEUED).count()
    # Refilled once half is spent: a batch every hour or so at the chips'
    # pace, rather than a few rows (and the batch's fixed cost) every minute.
    return room if 2 * room >= target else 0


def _count_skips(campaign: Campaign, *, now: datetime) -> dict[str, int]:
    """What the skip rules would remove, without changing anything (dry run)."""
    counts: dict[str, int] = {}
    seen = Q()
    for reason, condition in _skip_rules(campaign, now=now):
        count = _pending(campaign).filter(condition).exclude(seen).count()
        if count:
            counts[reason] = count
        seen |= condition
    return counts


def _apply_skips(
    campaign: Campaign, recipients: QuerySet[CampaignRecipient], *, now: datetime
) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reason, condition in _skip_rules(campaign, now=now):
        count = recipients.filter(condition).update(
            status=CampaignRecipient.Status.SKIPPED, skip_reason=reason, updated_at=now
        )
        if count:
            counts[reason] = count
    return counts


def _assign_chips(
    pending: QuerySet[CampaignRecipient], chips: list[Chip], *, now: datetime
) -> None:
    """Sticky chip first (the pool chip that already talks to the lead), then by capacity."""
    usable = [chip.pk for chip in chips]
    pending.exclude(chip__in=usable).update(chip=None)
    pending.filter(chip__isnull=True).update(
        chip=Subquery(
            Conversation.objects.filter(lead=OuterRef("lead"), chip__in=usable)
            .order_by("created_at", "pk")
            .values("chip")[:1]
        )
    )
    ids = list(pending.filter(chip__isnull=True).order_by("pk").values_list("pk", flat=True))
    if not ids:
        return
    by_chip: dict[int, list[int]] = {}
    for pk, index in zip(ids, spread(len(ids), pool_weights(chips, now=now)), strict=True):
        by_chip.setdefault(chips[index].pk, []).append(pk)
    for chip_id, pks in by_chip.items():
        CampaignRecipient.objects.filter(pk__in=pks).update(chip_id=chip_id)


def _enqueue_pending(
    campaign: Campaign, *, chips: list[Chip], now: datetime, skip_all: bool
) -> tuple[int, dict]:
    """Queue one first message per pending recipient, as many as the pool's room.

    Returns (queued, skipped by reason). With `skip_all` (start and resume)
    the skip rules run over every pending recipient, so the manager sees their
    counts at once; they run again over each batch the tick queues later, so
    a lead who opted out or was handed to a human meanwhile is skipped too.
    """
    if skip_all and bulk.bulk_available():
        # The skip rules' EXISTS and the joins below are planned on these rows
        # (a top-up's batch is planned on what the start's ANALYZE saw).
        bulk.analyze_if_grown(CampaignRecipient, rows=_pending(campaign).count())
    skipped = _apply_skips(campaign, _pending(campaign), now=now) if skip_all else {}
    bound = _batch_bound(campaign, room=_queue_room(campaign, chips))
    if bound is None:
        return 0, skipped
    pending = _pending(campaign).filter(pk__lte=bound)
    if not skip_all:
        skipped = _apply_skips(campaign, pending, now=now)
    if bulk.bulk_available():
        queued = _enqueue_staged(campaign, bound, chips=chips, now=now)
        if queued:
            outbox_kick()
        return queued, skipped
    _assign_chips(pending, chips, now=now)
    pairs = list(pending.values_list("lead_id", "chip_id"))
    if not pairs:
        return 0, skipped
    Conversation.objects.bulk_create(
        [Conversation(lead_id=lead, chip_id=chip, last_message_at=now) for lead, chip in pairs],
        ignore_conflicts=True,
    )
    pending.update(
        conversation=Subquery(
            Conversation.objects.filter(
                lead=OuterRef("lead"), chip=OuterRef("chip"), status=Conversation.Status.OPEN
            ).values("pk")[:1]
        )
    )
    rows = pending.values_list(
        "lead_id",
        "conversation_id",
        "chip_id",
        "lead__name",
        "lead__company",
        "lead__email",
        "lead__phone",
        "lead__attributes",
        "variables",
    )
    purpose = _first_purpose(campaign)
    variants = template_variants(campaign.message_template)
    not_before = campaign_window_opens_at(campaign, now=now) or now
    messages = [
        Message(
            conversation_id=conversation_id,
            chip_id=chip_id,
            direction=Message.Direction.OUTBOUND,
            purpose=purpose,
            kind=Message.Kind.TEXT,
            body=recipient_text(
                variants=variants,
                campaign_id=campaign.pk,
                lead_id=lead_id,
                variables=lead_variables(
                    name=name,
                    company=company,
                    email=email,
                    phone=phone or "",
                    attributes=attributes,
                    extra=variables,
                ),
            ),
            status=Message.Status.QUEUED,
            priority=PRIORITY_BY_PURPOSE[purpose],
            campaign_id=campaign.pk,
            next_attempt_at=not_before,
        )
        for (
            lead_id,
            conversation_id,
            chip_id,
            name,
            company,
            email,
            phone,
            attributes,
            variables,
        ) in rows.iterator(chunk_size=5000)
    ]
    # One INSERT on PostgreSQL whatever the audience (SQLite splits it by its
    # parameter limit).
    Message.objects.bulk_create(messages)
    queued = pending.update(
        status=CampaignRecipient.Status.QUEUED,
        updated_at=now,
        message=Subquery(
            Message.objects.filter(
                conversation=OuterRef("conversation"), campaign=campaign, purpose=purpose
            )
            .order_by("-pk")
            .values("pk")[:1]
        ),
    )
    outbox_kick()
    return queued, skipped


def _enqueue_staged(campaign: Campaign, bound: int, *, chips: list[Chip], now: datetime) -> int:
    """PostgreSQL: the same as the ORM path above, in a fixed number of statements.

    One read of the pending recipients with their lead and the lead's first
    pool chip; chips assigned in Python (kept, sticky, else spread by
    capacity); conversations and messages written from COPYed stages and the
    recipients updated from one (core.bulk). No per-row subquery: with a
    fresh 100,000-row campaign the planner's statistics are stale, and a
    correlated subquery it misjudges turns quadratic.
    """
    pending = CampaignRecipient.Status.PENDING
    recipients = CampaignRecipient._meta.db_table
    conversations = Conversation._meta.db_table
    usable = [chip.pk for chip in chips]
    rows = bulk.fetch(
        f"""
        SELECT r.id, r.lead_id, r.chip_id, r.variables,
               l.name, l.company, l.email, l.phone, l.attributes, first_chip.chip_id
        FROM {recipients} r
        JOIN {Lead._meta.db_table} l ON l.id = r.lead_id
        LEFT JOIN (
            SELECT DISTINCT ON (c.lead_id) c.lead_id, c.chip_id
            FROM {conversations} c
            WHERE c.chip_id = ANY(%s)
              AND c.lead_id IN (
                  SELECT lead_id FROM {recipients}
                  WHERE campaign_id = %s AND status = %s AND id <= %s
              )
            ORDER BY c.lead_id, c.created_at, c.id
        ) first_chip ON first_chip.lead_id = r.lead_id
        WHERE r.campaign_id = %s AND r.status = %s AND r.id <= %s
        ORDER BY r.id
        """,  # noqa: S608 - table names from the models' meta, values as parameters
        [usable, campaign.pk, pending, bound, campaign.pk, pending, bound],
    )
    if not rows:
        return 0
    # A chip already set on a pool chip stays; else the lead's first pool chip;
    # else the pool's spread by remaining capacity, in recipient order.
    assigned = [chip if chip in usable else first for _, _, chip, *_, first in rows]
    free = [i for i, chip in enumerate(assigned) if chip is None]
    if free:
        indexes = spread(len(free), pool_weights(chips, now=now))
        for i, index in zip(free, indexes, strict=True):
            assigned[i] = usable[index]

    pairs = sorted({(row[1], chip) for row, chip in zip(rows, assigned, strict=True)})
    pair_stage = bulk.stage_rows(
        prefix="campaign_pairs", columns=[("lead_id", "bigint"), ("chip_id", "bigint")], rows=pairs
    )
    bulk.insert_select(
        Conversation,
        expressions={"lead_id": "s.lead_id", "chip_id": "s.chip_id"},
        values={"last_message_at": now},
        from_sql=f"{pair_stage} s",
        # A conversation already open on that chip (or opened meanwhile) is the one.
        on_conflict="ON CONFLICT DO NOTHING",
        now=now,
    )
    conversation_of = {
        (lead, chip): pk
        for lead, chip, pk in bulk.fetch(
            f"SELECT c.lead_id, c.chip_id, c.id FROM {conversations} c "  # noqa: S608 - names
            f"JOIN {pair_stage} s ON s.lead_id = c.lead_id AND s.chip_id = c.chip_id "
            "WHERE c.status = %s",
            [Conversation.Status.OPEN],
        )
    }

    variants = template_variants(campaign.message_template)
    message_ids = bulk.next_ids(Message, len(rows))
    queue = (
        (
            recipient_id,
            conversation_of[(lead_id, chip_id)],
            chip_id,
            message_id,
            recipient_text(
                variants=variants,
                campaign_id=campaign.pk,
                lead_id=lead_id,
                variables=lead_variables(
                    name=name,
                    company=company,
                    email=email,
                    phone=phone or "",
                    # Django reads jsonb as text (its JSONField parses it).
                    attributes=json.loads(attributes),
                    extra=json.loads(variables),
                ),
            ),
        )
        for (
            recipient_id,
            lead_id,
            _,
            variables,
            name,
            company,
            email,
            phone,
            attributes,
            _,
        ), chip_id, message_id in zip(rows, assigned, message_ids, strict=True)
    )
    queue_stage = bulk.stage_rows(
        prefix="campaign_queue",
        columns=[
            ("recipient_id", "bigint"),
            ("conversation_id", "bigint"),
            ("chip_id", "bigint"),
            ("message_id", "bigint"),
            ("body", "text"),
        ],
        rows=queue,
    )
    purpose = _first_purpose(campaign)
    bulk.insert_select(
        Message,
        expressions={
            "id": "s.message_id",
            "conversation_id": "s.conversation_id",
            "chip_id": "s.chip_id",
            "body": "s.body",
        },
        values={
            "direction": Message.Direction.OUTBOUND,
            "purpose": purpose,
            "kind": Message.Kind.TEXT,
            "status": Message.Status.QUEUED,
            "priority": PRIORITY_BY_PURPOSE[purpose],
            "campaign_id": campaign.pk,
            "next_attempt_at": campaign_window_opens_at(campaign, now=now) or now,
        },
        from_sql=f"{queue_stage} s",
        now=now,
    )
    return bulk.execute(
        f"UPDATE {recipients} r SET status = %s, updated_at = %s, "  # noqa: S608 - names
        "chip_id = s.chip_id, conversation_id = s.conversation_id, message_id = s.message_id "
        f"FROM {queue_stage} s WHERE r.id = s.recipient_id",
        [CampaignRecipient.Status.QUEUED, now],
    )


def campaign_enqueue_added(*, campaign: Campaign, now: datetime | None = None) -> int:
    """Leads added to a running campaign are queued at once (as far as the pool's room
    goes, the tick queues the rest); otherwise at start/resume."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = _lock(campaign)
        return _top_up(campaign, now=now)


def campaign_top_up(*, campaign_id: int, now: datetime | None = None) -> int:
    """Queue more of a running campaign's pending audience as its chips send.

    Locked without waiting: a campaign being started, paused or cancelled is
    left to that control, and the next tick comes back to it.
    """
    now = now or timezone.now()
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update(skip_locked=True)
            .filter(pk=campaign_id, status=Campaign.Status.RUNNING)
            .first()
        )
        return _top_up(campaign, now=now) if campaign is not None else 0


def campaigns_top_up(*, now: datetime | None = None) -> int:
    """The scheduler's job: every running campaign with pending recipients; how many queued."""
    now = now or timezone.now()
    running = Campaign.objects.filter(
        Exists(_pending(OuterRef("pk"))), status=Campaign.Status.RUNNING
    )
    return sum(
        campaign_top_up(campaign_id=pk, now=now)
        for pk in running.order_by("pk").values_list("pk", flat=True)
    )


def _top_up(campaign: Campaign, *, now: datetime) -> int:
    if campaign.status != Campaign.Status.RUNNING:
        return 0
    chips = pool_usable_chips(campaign)
    if not chips:
        return 0
    queued, _ = _enqueue_pending(campaign, chips=chips, now=now, skip_all=False)
    return queued


# --- Controls ----------------------------------------------------------------------------


def campaign_start(
    *,
    campaign: Campaign,
    now: datetime | None = None,
    dry_run: bool = False,
    inline_max: int | None = None,
) -> ControlResult:
    """Start now, or schedule when `scheduled_at` is still ahead. Queues the audience.

    With `inline_max`, an audience with more pending recipients than that is
    handed to a worker (`_start_on_worker`) instead of being queued here.
    """
    now = now or timezone.now()
    with transaction.atomic():
        campaign = _lock(campaign)
        if campaign.status not in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED):
            raise CampaignError(
                gettext(
                    "The campaign is %(status)s: only a draft or a scheduled campaign can be "
                    "started."
                )
                % {"status": campaign.get_status_display().lower()}
            )
        chips = pool_usable_chips(campaign)
        if not chips:
            raise CampaignError(gettext("No chip in the pool can send this campaign."))
        if not campaign.recipients.exists():
            raise CampaignError(gettext("The campaign has no recipients."))
        if campaign.scheduled_at and campaign.scheduled_at > now:
            result = ControlResult(campaign, "schedule", Campaign.Status.SCHEDULED, dry_run=dry_run)
            result.message = gettext("Campaign scheduled for %(when)s.") % {
                "when": f"{timezone.localtime(campaign.scheduled_at):%d/%m %H:%M}"
            }
            if not dry_run:
                campaign.status = Campaign.Status.SCHEDULED
                campaign.save(update_fields=["status", "updated_at"])
            return result
        if not dry_run and (pending := _pending_beyond(campaign, inline_max)):
            return _start_on_worker(campaign, action="start", pending=pending, now=now)
        return _run(campaign, chips=chips, action="start", now=now, dry_run=dry_run)


def _pending_beyond(campaign: Campaign, limit: int | None) -> int:
    """The pending recipients' count when there are more than `limit`; else 0 (None: no limit)."""
    if limit is None:
        return 0
    pending = _pending(campaign).count()
    return pending if pending > limit else 0


def _start_on_worker(
    campaign: Campaign, *, action: str, pending: int, now: datetime
) -> ControlResult:
    """Too big to queue within a web request: a worker starts it at once.

    The campaign becomes scheduled for now, so the scheduler's tick starts it
    too if the task is lost; the task and the tick lock the campaign and only
    start it while it is still scheduled, so it starts once, and a pause or a
    cancel meanwhile wins.
    """
    campaign.status = Campaign.Status.SCHEDULED
    campaign.scheduled_at = now
    campaign.paused_at = None
    campaign.paused_reason = ""
    campaign.save(
        update_fields=["status", "scheduled_at", "paused_at", "paused_reason", "updated_at"]
    )
    # The cluster that runs the scheduler's tick, which starts it if this is lost.
    transaction.on_commit(
        lambda: enqueue_nudge(
            "campaigns.tasks.campaign_start_due",
            campaign.pk,
            failure=f"campaign {campaign.pk}: could not enqueue its start",
        )
    )
    return ControlResult(
        campaign,
        action,
        Campaign.Status.SCHEDULED,
        message=ngettext(
            "Starting in the background: %(count)d recipient is being queued; "
            "the progress shows on the campaign's page.",
            "Starting in the background: %(count)d recipients are being queued; "
            "the progress shows on the campaign's page.",
            pending,
        )
        % {"count": pending},
    )


def _run(
    campaign: Campaign, *, chips: list[Chip], action: str, now: datetime, dry_run: bool
) -> ControlResult:
    """Put a locked campaign in `running` and queue its pending recipients."""
    if dry_run:
        skipped = _count_skips(campaign, now=now)
        eligible = _pending(campaign).count() - sum(skipped.values())
        queued = min(eligible, _queue_room(campaign, chips))
        result = ControlResult(
            campaign,
            action,
            Campaign.Status.RUNNING,
            queued=queued,
            waiting=eligible - queued,
            skipped=skipped,
            dry_run=True,
        )
    else:
        campaign.status = Campaign.Status.RUNNING
        campaign.started_at = campaign.started_at or now
        campaign.paused_at = None
        campaign.paused_reason = ""
        campaign.save(
            update_fields=["status", "started_at", "paused_at", "paused_reason", "updated_at"]
        )
        _rebalance(campaign, chips=chips, now=now)
        # Messages held while it was paused go again now, not after their hold.
        Message.objects.filter(
            campaign=campaign, status=Message.Status.QUEUED, next_attempt_at__gt=now
        ).update(next_attempt_at=now, updated_at=now)
        queued, skipped = _enqueue_pending(campaign, chips=chips, now=now, skip_all=True)
        result = ControlResult(
            campaign,
            action,
            Campaign.Status.RUNNING,
            queued=queued,
            waiting=_pending(campaign).count(),
            skipped=skipped,
        )
        transaction.on_commit(lambda: campaign_complete_if_done(campaign_id=campaign.pk))
    counts = {
        "queued": result.queued,
        "waiting": result.waiting,
        "skipped": sum(result.skipped.values()),
    }
    if result.waiting:
        result.message = (
            gettext(
                "%(queued)d message(s) queued now, %(waiting)d more as the chips send; "
                "%(skipped)d lead(s) skipped."
            )
            % counts
        )
    else:
        result.message = (
            gettext("%(queued)d message(s) queued; %(skipped)d lead(s) skipped.") % counts
        )
    return result


def campaign_pause(
    *, campaign: Campaign, reason: str, now: datetime | None = None, dry_run: bool = False
) -> ControlResult:
    """Stop new sends at once: the outbox re-checks the campaign before each send."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = _lock(campaign)
        if campaign.status not in ACTIVE:
            raise CampaignError(
                gettext("The campaign is %(status)s: there is nothing to pause.")
                % {"status": campaign.get_status_display().lower()}
            )
        if not dry_run:
            _pause(campaign, reason=reason, now=now)
    waiting = campaign.recipients.filter(status__in=UNSENT).count()
    return ControlResult(
        campaign,
        "pause",
        Campaign.Status.PAUSED,
        dry_run=dry_run,
        message=ngettext(
            "Campaign paused; %(count)d send waiting.",
            "Campaign paused; %(count)d sends waiting.",
            waiting,
        )
        % {"count": waiting},
    )


def _pause(campaign: Campaign, *, reason: str, now: datetime) -> bool:
    updated = Campaign.objects.filter(pk=campaign.pk, status__in=ACTIVE).update(
        status=Campaign.Status.PAUSED, paused_at=now, paused_reason=reason[:200], updated_at=now
    )
    return bool(updated)


def campaign_resume(
    *,
    campaign: Campaign,
    now: datetime | None = None,
    dry_run: bool = False,
    inline_max: int | None = None,
) -> ControlResult:
    """Continue a paused campaign on the chips that can still send it (see campaign_start
    for `inline_max`)."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = _lock(campaign)
        if campaign.status != Campaign.Status.PAUSED:
            raise CampaignError(gettext("Only a paused campaign can be resumed."))
        chips = pool_usable_chips(campaign)
        if not chips:
            raise CampaignError(
                gettext("No chip in the pool can send this campaign: unblock or add a chip.")
            )
        if not dry_run and (pending := _pending_beyond(campaign, inline_max)):
            return _start_on_worker(campaign, action="resume", pending=pending, now=now)
        result = _run(campaign, chips=chips, action="resume", now=now, dry_run=dry_run)
    if not dry_run:
        outbox_kick()
    return result


def campaign_cancel(
    *, campaign: Campaign, now: datetime | None = None, dry_run: bool = False
) -> ControlResult:
    """Cancel everything not yet handed to the provider; in-flight sends finish."""
    now = now or timezone.now()
    reason = gettext("Campaign cancelled")
    with transaction.atomic():
        campaign = _lock(campaign)
        if campaign.status in FINISHED:
            raise CampaignError(
                gettext("The campaign is already %(status)s.")
                % {"status": campaign.get_status_display().lower()}
            )
        queued = Message.objects.filter(campaign=campaign, status=Message.Status.QUEUED)
        # Recipients not queued yet, plus every queued message (first or follow-up).
        never_queued = campaign.recipients.filter(
            status=CampaignRecipient.Status.PENDING, message__isnull=True
        )
        if dry_run:
            count = queued.count() + never_queued.count()
        else:
            campaign.recipients.filter(
                status__in=UNSENT, message__status=Message.Status.QUEUED
            ).update(status=CampaignRecipient.Status.CANCELLED, updated_at=now)
            count = never_queued.update(
                status=CampaignRecipient.Status.CANCELLED, updated_at=now
            ) + queued.update(
                status=Message.Status.CANCELLED,
                outcome=Message.Outcome.CANCELLED,
                last_error=reason,
                next_attempt_at=None,
                updated_at=now,
            )
            campaign.status = Campaign.Status.CANCELLED
            campaign.finished_at = now
            campaign.save(update_fields=["status", "finished_at", "updated_at"])
    return ControlResult(
        campaign,
        "cancel",
        Campaign.Status.CANCELLED,
        cancelled=count,
        dry_run=dry_run,
        message=ngettext(
            "Campaign cancelled; %(count)d send cancelled.",
            "Campaign cancelled; %(count)d sends cancelled.",
            count,
        )
        % {"count": count},
    )


def campaign_complete_if_done(*, campaign_id: int, now: datetime | None = None) -> bool:
    """A running campaign with nothing left to send or follow up completes by itself."""
    from campaigns.followups import campaign_follow_ups_left

    campaign = Campaign.objects.filter(pk=campaign_id, status=Campaign.Status.RUNNING).first()
    if campaign is None:
        return False
    if campaign.recipients.filter(status__in=UNSENT).exists():
        return False
    if Message.objects.filter(
        campaign=campaign, status__in=[Message.Status.QUEUED, Message.Status.SENDING]
    ).exists():
        return False
    if campaign_follow_ups_left(campaign):
        return False
    now = now or timezone.now()
    return bool(
        Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.RUNNING).update(
            status=Campaign.Status.COMPLETED, finished_at=now, updated_at=now
        )
    )


def campaigns_start_due(*, now: datetime | None = None) -> list[ControlResult]:
    """The scheduler's job: start every scheduled campaign whose time has come."""
    now = now or timezone.now()
    due = Campaign.objects.filter(status=Campaign.Status.SCHEDULED, scheduled_at__lte=now)
    results = (
        campaign_start_due(campaign_id=pk, now=now)
        for pk in due.order_by("scheduled_at").values_list("pk", flat=True)
    )
    return [result for result in results if result is not None]


def campaign_start_due(*, campaign_id: int, now: datetime | None = None) -> ControlResult | None:
    """Start one campaign if it is still scheduled and due; None when it is not (any more).

    Locked without waiting: a campaign another worker is starting is theirs,
    and one started, paused or cancelled meanwhile is left as it is. A
    campaign that cannot start pauses with the reason.
    """
    now = now or timezone.now()
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update(skip_locked=True)
            .filter(pk=campaign_id, status=Campaign.Status.SCHEDULED, scheduled_at__lte=now)
            .first()
        )
        if campaign is None:
            return None
        try:
            return campaign_start(campaign=campaign, now=now)
        except CampaignError as exc:
            _pause(campaign, reason=str(exc), now=now)
            logger.warning("campaign %s could not start: %s", campaign.pk, exc)
            return None


# --- Moving work off a chip that stopped --------------------------------------------------


def _rebalance(campaign: Campaign, *, chips: list[Chip], now: datetime) -> int:
    """Move first messages waiting on chips that can no longer send to `chips`."""
    usable = [chip.pk for chip in chips]
    stranded = list(
        campaign.recipients.filter(
            status=CampaignRecipient.Status.QUEUED, message__status=Message.Status.QUEUED
        )
        .exclude(message__chip__in=usable)
        .select_related("message")
        .order_by("pk")
    )
    if not stranded:
        return 0
    targets = spread(len(stranded), pool_weights(chips, now=now))
    Conversation.objects.bulk_create(
        [
            Conversation(lead_id=recipient.lead_id, chip_id=chips[index].pk, last_message_at=now)
            for recipient, index in zip(stranded, targets, strict=True)
        ],
        ignore_conflicts=True,
    )
    open_by_pair = {
        (lead, chip): pk
        for pk, lead, chip in Conversation.objects.filter(
            lead__in=[r.lead_id for r in stranded], chip__in=usable, status=Conversation.Status.OPEN
        ).values_list("pk", "lead_id", "chip_id")
    }
    messages = []
    for recipient, index in zip(stranded, targets, strict=True):
        chip_id = chips[index].pk
        recipient.chip_id = chip_id
        recipient.conversation_id = open_by_pair[(recipient.lead_id, chip_id)]
        recipient.updated_at = now
        message = recipient.message
        message.chip_id = chip_id
        message.conversation_id = recipient.conversation_id
        message.next_attempt_at = now
        message.last_error = ""
        message.updated_at = now
        messages.append(message)
    Message.objects.bulk_update(
        messages,
        ["chip", "conversation", "next_attempt_at", "last_error", "updated_at"],
        batch_size=1000,
    )
    CampaignRecipient.objects.bulk_update(
        stranded, ["chip", "conversation", "updated_at"], batch_size=1000
    )
    logger.warning(
        "campaign %s: %s first messages moved to chips %s", campaign.pk, len(stranded), usable
    )
    return len(stranded)


def campaigns_chip_revoked(chip: Chip, reason: str, now: datetime) -> list[str]:
    """A pool chip was quarantined or blocked: move its unsent first messages, or pause.

    Registered in channels.quarantine.CHIP_REVOKED_HOOKS; runs in the caller's
    transaction with `chip` locked and already stripped of its permissions.
    """
    paused = []
    affected = Campaign.objects.filter(
        chips=chip, status__in=[*ACTIVE, Campaign.Status.PAUSED]
    ).select_for_update(of=("self",))
    for campaign in affected:
        chips = pool_usable_chips(campaign, exclude=[chip.pk])
        if chips:
            if campaign.status == Campaign.Status.RUNNING:
                moved = _rebalance(campaign, chips=chips, now=now)
                if moved:
                    transaction.on_commit(outbox_kick)
            continue
        if _pause(
            campaign,
            reason=gettext("%(reason)s; no other chip in the pool can send") % {"reason": reason},
            now=now,
        ):
            paused.append(campaign.name)
    return paused


# --- Outbox seams ------------------------------------------------------------------------


def campaign_outbox_gate(message: Message, now: datetime) -> Verdict | None:
    """Registered in conversations.outbox.OUTBOX_GATES: the campaign's own checks."""
    if message.campaign_id is None:
        return None
    campaign = message.campaign
    if campaign.status == Campaign.Status.CANCELLED:
        return Verdict("cancel", gettext("Campaign cancelled"))
    if campaign.status in (
        Campaign.Status.PAUSED,
        Campaign.Status.DRAFT,
        Campaign.Status.SCHEDULED,
    ):
        return Verdict("hold", gettext("Campaign paused"))
    opens = campaign_window_opens_at(campaign, now=now)
    if opens is not None:
        return Verdict(
            "hold",
            gettext("Outside the campaign's send window (opens %(opens)s)")
            % {"opens": f"{timezone.localtime(opens):%d/%m %H:%M}"},
            until=opens,
        )
    return None


_RECIPIENT_STATUS = {
    Message.Status.SENT: CampaignRecipient.Status.SENT,
    Message.Status.FAILED: CampaignRecipient.Status.FAILED,
    Message.Status.CANCELLED: CampaignRecipient.Status.CANCELLED,
}


def campaign_message_settled(message: Message) -> None:
    """Registered in conversations.outbox.OUTBOX_SETTLED_HOOKS (inside its transaction)."""
    if message.campaign_id is None:
        return
    status = _RECIPIENT_STATUS.get(message.status)
    if status:
        CampaignRecipient.objects.filter(message_id=message.pk).update(
            status=status, updated_at=timezone.now()
        )
    if message.status == Message.Status.FAILED:
        _pause_on_failure_rate(message.campaign_id)
    campaign_id = message.campaign_id
    transaction.on_commit(lambda: campaign_complete_if_done(campaign_id=campaign_id))


def _pause_on_failure_rate(campaign_id: int) -> None:
    window = settings.CAMPAIGN_FAILURE_WINDOW
    latest = list(
        CampaignRecipient.objects.filter(
            campaign_id=campaign_id,
            status__in=[CampaignRecipient.Status.SENT, CampaignRecipient.Status.FAILED],
        )
        .order_by("-updated_at")
        .values_list("status", flat=True)[:window]
    )
    if len(latest) < window:
        return
    failed = Counter(latest)[CampaignRecipient.Status.FAILED]
    rate = failed / window
    if rate <= settings.CAMPAIGN_FAILURE_RATE:
        return
    reason = gettext(
        "Paused automatically: %(failed)d of the last %(window)d sends failed (%(rate)s)"
    ) % {"failed": failed, "window": window, "rate": f"{rate:.0%}"}
    campaign = Campaign.objects.get(pk=campaign_id)
    if _pause(campaign, reason=reason, now=timezone.now()):
        title = gettext("Campaign paused: %(name)s") % {"name": campaign.name}
        transaction.on_commit(lambda: alert_raise(title=title, text=reason))


# --- One door for the admin, the command and the API -------------------------------------

CONTROLS = ("start", "pause", "resume", "cancel")


def campaign_control(
    *,
    campaign: Campaign,
    action: str,
    source: str,
    actor: object | None = None,
    actor_label: str = "",
    dry_run: bool = False,
) -> ControlResult:
    """Apply one control and write its audit entry (not on a dry run)."""
    who = actor_label or getattr(actor, "get_username", lambda: "")() or source
    # A web request has gunicorn's timeout; the command and the tasks do not.
    inline_max = settings.CAMPAIGN_START_INLINE_MAX if source == AuditEntry.Source.ADMIN else None
    if action == "start":
        result = campaign_start(campaign=campaign, dry_run=dry_run, inline_max=inline_max)
    elif action == "pause":
        result = campaign_pause(
            campaign=campaign, reason=gettext("Paused by %(who)s") % {"who": who}, dry_run=dry_run
        )
    elif action == "resume":
        result = campaign_resume(campaign=campaign, dry_run=dry_run, inline_max=inline_max)
    elif action == "cancel":
        result = campaign_cancel(campaign=campaign, dry_run=dry_run)
    else:
        raise ValueError(f"unknown campaign control {action!r}")
    if not dry_run:
        audit_record(
            action=f"campaign_{result.action}",
            source=source,
            actor=actor,
            actor_label=actor_label,
            target=Campaign,
            objects=[campaign],
            detail={
                "status": result.status,
                "queued": result.queued,
                "cancelled": result.cancelled,
                "skipped": result.skipped,
            },
        )
    return result
