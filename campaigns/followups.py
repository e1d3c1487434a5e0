"""Follow-ups: one engine for two sources of rules.

1. A campaign's rules: after N hours without a reply to the campaign, the
   next of its follow-up texts (`Campaign.follow_up_*`).
2. An agent profile's rules: a lead who stopped answering the flow's question
   gets a nudge after N hours, up to K times (`AgentProfile.follow_up_*`; the
   W-API follow-up-check of the stuck-bot seed).

Both end in `_follow_up_queue`: an outbound message with purpose `follow_up`
on the conversation's chip (the number that talks to the lead), queued like
any other, so the outbox applies the chip's window, daily cap and
`can_follow_up`, and `campaign_outbox_gate` a campaign's own window. A
follow-up never goes to a lead who replied, opted out, is with a human
(handoff or human control) or whose conversation was ended: the selectors
leave those out, `_follow_up_queue` checks again under the conversation's row
lock (so two ticks never queue two), and `follow_up_outbox_gate` checks once
more right before sending, because a follow-up can wait hours for a window.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, Exists, F, IntegerField, Max, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext

from agent.models import AgentProfile, default_follow_up_text
from agent.selectors import conversations_awaiting_flow_answer
from campaigns.models import Campaign, CampaignRecipient
from campaigns.rendering import lead_variables, template_render, template_variants
from conversations.models import Conversation, Handoff, Lead, Message
from conversations.outbox import Verdict, outbox_enqueue

ACTIVE_HANDOFF = [Handoff.Status.OPEN, Handoff.Status.ACCEPTED]
IN_FLIGHT = [Message.Status.QUEUED, Message.Status.SENDING]


def _active_handoff(conversation: object) -> Exists:
    return Exists(Handoff.objects.filter(conversation=conversation, status__in=ACTIVE_HANDOFF))


def _in_flight(conversation: object) -> Exists:
    """Something outbound still waits to leave: the lead gets nothing more until it has."""
    return Exists(
        Message.objects.filter(
            conversation=conversation,
            direction=Message.Direction.OUTBOUND,
            status__in=IN_FLIGHT,
        )
    )


def _variables(lead: Lead, *, extra: dict | None = None) -> dict[str, str]:
    return lead_variables(
        name=lead.name,
        company=lead.company,
        email=lead.email,
        phone=lead.phone or "",
        attributes=lead.attributes,
        extra=extra,
    )


def _follow_up_queue(
    *, conversation_id: int, body: str, waited_since: datetime, campaign: Campaign | None = None
) -> Message | None:
    """Queue one follow-up, unless the conversation changed since the selector read it.

    `waited_since` is our last message the lead did not answer: a lead message
    after it is a reply. The conversation row is locked (SKIP LOCKED: another
    tick on it means it is being handled) and read again, so a second tick, or
    the other source of rules, finds this follow-up in flight and stops.
    """
    conversation = (
        Conversation.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("lead")
        .filter(pk=conversation_id)
        .first()
    )
    if conversation is None or follow_up_blocked(conversation, waited_since=waited_since):
        return None
    if (
        Conversation.objects.filter(pk=conversation_id)
        .filter(_active_handoff(OuterRef("pk")) | _in_flight(OuterRef("pk")))
        .exists()
    ):
        return None
    return outbox_enqueue(
        conversation=conversation,
        body=body,
        purpose=Message.Purpose.FOLLOW_UP,
        campaign=campaign,
    )


def follow_up_blocked(conversation: Conversation, *, waited_since: datetime | None) -> str:
    """Why a follow-up may not go to this conversation, translated; "" if it may."""
    if (
        conversation.status != Conversation.Status.OPEN
        or conversation.controlled_by == Conversation.ControlledBy.CLOSED
    ):
        return gettext("Conversation closed: follow-up cancelled")
    if conversation.controlled_by == Conversation.ControlledBy.HUMAN:
        return gettext("Conversation with a human: follow-up cancelled")
    if conversation.controlled_by != Conversation.ControlledBy.AGENT or conversation.agent_paused:
        return gettext("Agent paused in this conversation: follow-up cancelled")
    if conversation.lead.opted_out:
        return gettext("Lead asked not to receive messages (opt-out)")
    if (
        waited_since is not None
        and conversation.last_inbound_at is not None
        and conversation.last_inbound_at >= waited_since
    ):
        return gettext("The lead answered: follow-up cancelled")
    return ""


def follow_up_outbox_gate(message: Message, now: datetime) -> Verdict | None:
    """Registered in conversations.outbox.OUTBOX_GATES: a queued follow-up still has a reason.

    A follow-up may wait for a send window for days; if meanwhile the lead
    replied, was handed to a human or the conversation ended, it is cancelled,
    not sent late. A follow-up campaign's first message is not a follow-up of
    anything: only the campaign's own gate applies to it.
    """
    if message.purpose != Message.Purpose.FOLLOW_UP:
        return None
    if (
        message.campaign_id is not None
        and CampaignRecipient.objects.filter(message_id=message.pk).exists()
    ):
        return None
    conversation = message.conversation
    reason = follow_up_blocked(conversation, waited_since=message.created_at)
    if (
        not reason
        and Handoff.objects.filter(
            conversation_id=conversation.pk, status__in=ACTIVE_HANDOFF
        ).exists()
    ):
        reason = gettext("Conversation with a human: follow-up cancelled")
    return Verdict("cancel", reason) if reason else None


# --- Source 1: a campaign's rules ----------------------------------------------------------


def campaign_follow_up_texts(campaign: Campaign) -> list[str]:
    return template_variants(campaign.follow_up_texts)


def _still_waiting(campaign: Campaign) -> QuerySet[CampaignRecipient]:
    """Recipients who got the first message, have follow-ups left and may still get them."""
    texts = campaign_follow_up_texts(campaign)
    last_contact = (
        Message.objects.filter(
            campaign=campaign,
            conversation=OuterRef("conversation"),
            direction=Message.Direction.OUTBOUND,
            sent_at__isnull=False,
        )
        .order_by()
        .values("conversation")
        .annotate(at=Max("sent_at"))
        .values("at")
    )
    return (
        CampaignRecipient.objects.filter(
            campaign=campaign,
            status=CampaignRecipient.Status.SENT,
            follow_ups_sent__lt=len(texts),
            conversation__status=Conversation.Status.OPEN,
            conversation__controlled_by=Conversation.ControlledBy.AGENT,
            conversation__agent_paused=False,
            lead__opted_out=False,
        )
        .annotate(last_contact_at=Subquery(last_contact))
        # The lead wrote after our last message: they replied, the agent talks now.
        .exclude(conversation__last_inbound_at__gte=F("last_contact_at"))
        .exclude(_active_handoff(OuterRef("conversation")))
        .exclude(_in_flight(OuterRef("conversation")))
    )


def campaign_follow_ups_left(campaign: Campaign) -> bool:
    """Does anyone still wait for a follow-up (so the campaign is not complete yet)?"""
    if not campaign_follow_up_texts(campaign):
        return False
    return _still_waiting(campaign).exists()


def campaign_follow_ups_due(campaign: Campaign, *, now: datetime) -> QuerySet[CampaignRecipient]:
    cutoff = now - timedelta(hours=campaign.follow_up_after_hours)
    return _still_waiting(campaign).filter(last_contact_at__lte=cutoff)


def campaign_follow_ups_send(*, campaign: Campaign, now: datetime | None = None) -> int:
    """Queue the next follow-up for every recipient whose wait is over. Returns how many."""
    now = now or timezone.now()
    texts = campaign_follow_up_texts(campaign)
    if not texts or campaign.status != Campaign.Status.RUNNING:
        return 0
    count = 0
    with transaction.atomic():
        due = (
            campaign_follow_ups_due(campaign, now=now)
            .select_related("lead")
            .select_for_update(of=("self",), skip_locked=True)
        )
        for recipient in due:
            body = template_render(
                texts[recipient.follow_ups_sent],
                _variables(recipient.lead, extra=recipient.variables),
            )
            queued = _follow_up_queue(
                conversation_id=recipient.conversation_id,
                body=body,
                waited_since=recipient.last_contact_at,
                campaign=campaign,
            )
            if queued is None:
                continue
            recipient.follow_ups_sent += 1
            recipient.save(update_fields=["follow_ups_sent", "updated_at"])
            count += 1
    return count


def follow_ups_send_due(*, now: datetime | None = None) -> int:
    """The periodic task: follow-ups of every running campaign."""
    now = now or timezone.now()
    running = Campaign.objects.filter(status=Campaign.Status.RUNNING).exclude(
        Q(follow_up_texts="") | Q(follow_up_texts__isnull=True)
    )
    return sum(campaign_follow_ups_send(campaign=c, now=now) for c in running)


# --- Source 2: an agent profile's rules ---------------------------------------------------


def agent_follow_up_texts(profile: AgentProfile) -> list[str]:
    return template_variants(profile.follow_up_texts) or [default_follow_up_text()]


def agent_follow_ups_due(*, profile: AgentProfile, now: datetime) -> QuerySet[Conversation]:
    """Conversations this profile answers whose lead left its question unanswered long enough.

    `follow_ups_sent` counts the nudges since the lead's last message: a reply
    starts the count again, and at `follow_up_max` the lead is left alone.
    """
    nudges = (
        Message.objects.filter(
            conversation=OuterRef("pk"),
            direction=Message.Direction.OUTBOUND,
            purpose=Message.Purpose.FOLLOW_UP,
            campaign__isnull=True,
            created_at__gt=OuterRef("last_inbound_at"),
        )
        .order_by()
        .values("conversation")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        conversations_awaiting_flow_answer()
        .filter(profile_id=profile.pk)
        .filter(last_outbound_at__lte=now - timedelta(hours=profile.follow_up_after_hours))
        .annotate(follow_ups_sent=Coalesce(Subquery(nudges, output_field=IntegerField()), 0))
        .filter(follow_ups_sent__lt=profile.follow_up_max)
        .exclude(_active_handoff(OuterRef("pk")))
        .exclude(_in_flight(OuterRef("pk")))
    )


def agent_follow_ups_send(*, profile: AgentProfile, now: datetime | None = None) -> int:
    """Queue the next nudge for each lead of this profile who stopped mid-flow; how many."""
    now = now or timezone.now()
    if not (profile.follow_up_enabled and profile.is_active):
        return 0
    texts = agent_follow_up_texts(profile)
    count = 0
    due = agent_follow_ups_due(profile=profile, now=now).select_related("lead")
    for conversation in due.iterator(chunk_size=500):
        body = template_render(
            texts[min(conversation.follow_ups_sent, len(texts) - 1)],
            _variables(conversation.lead, extra=conversation.flow_data),
        )
        # One transaction per conversation: its row lock lasts one short insert.
        with transaction.atomic():
            queued = _follow_up_queue(
                conversation_id=conversation.pk,
                body=body,
                waited_since=conversation.last_outbound_at,
            )
        count += queued is not None
    return count


def agent_follow_ups_send_due(*, now: datetime | None = None) -> int:
    """The periodic task: nudges of every active profile with follow-ups turned on."""
    now = now or timezone.now()
    profiles = AgentProfile.objects.filter(follow_up_enabled=True, is_active=True)
    return sum(agent_follow_ups_send(profile=p, now=now) for p in profiles)
