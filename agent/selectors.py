"""Reads of the agent: who answers a conversation, may it, and what is left unanswered.

One turn, one reply. A turn is every inbound message of the lead not yet
answered (newer than the last live reply or human message); its reply is one
or more outbound messages whose `reply_to` is the turn's last message. A
message counts as answered while such a reply exists and has not failed or
been cancelled, which is what makes reprocessing safe: processing the same
message again finds it answered and sends nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import BigIntegerField, Case, Exists, F, OuterRef, Q, QuerySet, Subquery, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext

from agent.flows import FLOW_DONE
from agent.models import AgentProfile, AgentRun, ConversationLease, default_system_prompt
from conversations.models import Conversation, Message

# An outbound message that answers the lead: the agent's reply, or the system
# notice of a handoff (which must leave even though a human now has the thread).
ANSWER_PURPOSES = (Message.Purpose.REPLY, Message.Purpose.SYSTEM)
# Outbound messages without a `reply_to` that still answer what the lead wrote before them.
UNLINKED_ANSWER_PURPOSES = (Message.Purpose.REPLY, Message.Purpose.SYSTEM, Message.Purpose.HUMAN)
DEAD_STATUSES = (Message.Status.FAILED, Message.Status.CANCELLED)
MAX_TURN_MESSAGES = 50


def profile_for(*, conversation: Conversation) -> AgentProfile | None:
    """The conversation's own profile, else its campaign's, else its chip's (active ones only)."""
    if conversation.agent_profile_id and conversation.agent_profile.is_active:
        return conversation.agent_profile
    campaign_message = (
        Message.objects.filter(
            conversation=conversation,
            campaign__agent_profile__isnull=False,
            campaign__agent_profile__is_active=True,
        )
        .select_related("campaign__agent_profile__flow")
        .order_by("-created_at")
        .first()
    )
    if campaign_message is not None:
        return campaign_message.campaign.agent_profile
    chip_profile = conversation.chip.agent_profile
    if chip_profile is not None and chip_profile.is_active:
        return chip_profile
    return None


def profile_id_expression() -> Coalesce:
    """`profile_for` in SQL, for a Conversation queryset: the id of the profile that answers.

    NULL where no active profile would (the unsaved default one answers then).
    """
    latest_campaign_profile = (
        Message.objects.filter(
            conversation=OuterRef("pk"),
            campaign__agent_profile__isnull=False,
            campaign__agent_profile__is_active=True,
        )
        .order_by("-created_at")
        .values("campaign__agent_profile_id")[:1]
    )
    return Coalesce(
        Case(When(agent_profile__is_active=True, then=F("agent_profile_id"))),
        Subquery(latest_campaign_profile),
        Case(When(chip__agent_profile__is_active=True, then=F("chip__agent_profile_id"))),
        output_field=BigIntegerField(),
    )


def conversations_awaiting_flow_answer() -> QuerySet[Conversation]:
    """Agent conversations whose flow asked a question the lead has not answered yet.

    Mid-flow (a step is waiting, the flow has not ended), the agent's message
    went out after the lead's last one, and nothing stops the agent from
    talking: open, agent-controlled, lead not opted out. Annotated with
    `profile_id`, the profile answering it.
    """
    return (
        Conversation.objects.filter(
            status=Conversation.Status.OPEN,
            controlled_by=Conversation.ControlledBy.AGENT,
            agent_paused=False,
            lead__opted_out=False,
            last_inbound_at__isnull=False,
            last_outbound_at__gt=F("last_inbound_at"),
        )
        .exclude(flow_step__in=["", FLOW_DONE])
        .annotate(profile_id=profile_id_expression())
    )


def default_profile() -> AgentProfile:
    # Unsaved: the model's defaults (fallback, keywords, texts) with the
    # settings' system prompt, for chips nobody configured.
    return AgentProfile(name=gettext("(default)"), system_prompt=default_system_prompt())


def why_not_answer(*, conversation: Conversation) -> str:
    """Empty when the agent may answer this conversation; otherwise the reason, translated."""
    if conversation.status != Conversation.Status.OPEN:
        return gettext("Conversation closed")
    if conversation.controlled_by == Conversation.ControlledBy.HUMAN:
        return gettext("Conversation with a human")
    if conversation.agent_paused:
        return gettext("Agent paused in this conversation")
    if conversation.lead.opted_out:
        return gettext("Lead asked not to receive messages (opt-out)")
    return ""


# --- Turns ---------------------------------------------------------------------------------


def _live_answers(conversation_id: Any) -> QuerySet[Message]:
    """Outbound messages that answer the lead and may still reach them."""
    return (
        Message.objects.filter(
            conversation_id=conversation_id, direction=Message.Direction.OUTBOUND
        )
        .filter(
            Q(purpose__in=ANSWER_PURPOSES, reply_to__isnull=False)
            | Q(purpose__in=UNLINKED_ANSWER_PURPOSES, reply_to__isnull=True)
        )
        .exclude(status__in=DEAD_STATUSES)
    )


def _answered_boundary(conversation_id: int) -> Q:
    """Inbound messages matching this are unanswered.

    An agent reply answers its `reply_to` and everything before it (a message
    that arrived while the reply was being written is still unanswered); a
    human's message, or a reply without a link, answers what came before it.
    """
    live = _live_answers(conversation_id)
    last_linked = (
        live.filter(reply_to__isnull=False)
        .order_by("-reply_to__created_at", "-reply_to_id")
        .values_list("reply_to__created_at", "reply_to_id")
        .first()
    )
    last_unlinked = (
        live.filter(reply_to__isnull=True)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    boundary = Q()
    if last_linked is not None:
        at, pk = last_linked
        boundary &= Q(created_at__gt=at) | Q(created_at=at, pk__gt=pk)
    if last_unlinked is not None:
        boundary &= Q(created_at__gt=last_unlinked)
    return boundary


def pending_turn(*, conversation_id: int) -> list[Message]:
    """The lead's unanswered messages, oldest first (the tail of the conversation)."""
    messages = (
        Message.objects.filter(conversation_id=conversation_id, direction=Message.Direction.INBOUND)
        .exclude(status=Message.Status.IGNORED)
        .filter(_answered_boundary(conversation_id))
        .order_by("-created_at", "-pk")[:MAX_TURN_MESSAGES]
    )
    return list(reversed(messages))


def latest_inbound_after(*, conversation_id: int, message_id: int) -> int | None:
    """The id of the lead's latest message stored after `message_id`, if any.

    What a turn that answered up to `message_id` looks for once it let go of
    the conversation (one indexed read instead of `pending_turn`'s three): a
    message stored meanwhile had its own task turned away as busy.
    """
    return (
        Message.objects.filter(
            conversation_id=conversation_id,
            direction=Message.Direction.INBOUND,
            pk__gt=message_id,
        )
        .exclude(status=Message.Status.IGNORED)
        .order_by("-created_at", "-pk")
        .values_list("pk", flat=True)
        .first()
    )


def message_is_answered(*, message: Message) -> bool:
    """A live answer covers this message (a reply to it or to a later one, or a later human one)."""
    return _live_answers(message.conversation_id).filter(_answers(of=message)).exists()


def _answers(*, of: Message | None) -> Q:
    """Answers covering inbound message `of` (None: the outer query's message, in a subquery)."""
    if isinstance(of, Message):
        created_at, pk = of.created_at, of.pk
    else:
        created_at, pk = OuterRef("created_at"), OuterRef("pk")
    return (
        Q(reply_to__created_at__gt=created_at)
        | Q(reply_to_id=pk)
        | Q(reply_to__isnull=True, created_at__gt=created_at)
    )


def unanswered_messages(
    *, since: timedelta, phone: str | None = None, grace: timedelta | None = None
) -> QuerySet[Message]:
    """The latest unanswered message of each conversation with a lead message in the period.

    Only conversations the agent may answer; `grace` leaves alone what normal
    processing is still handling.
    """
    now = timezone.now()
    grace = timedelta(seconds=settings.AGENT_RECOVERY_MIN_AGE_SECONDS) if grace is None else grace
    conversations = Conversation.objects.filter(
        status=Conversation.Status.OPEN,
        controlled_by=Conversation.ControlledBy.AGENT,
        agent_paused=False,
        lead__opted_out=False,
    )
    if phone:
        conversations = conversations.filter(lead__phone=phone)
    latest_inbound = Message.objects.filter(
        conversation=OuterRef("conversation"), direction=Message.Direction.INBOUND
    ).order_by("-created_at", "-pk")
    candidates = (
        Message.objects.filter(
            direction=Message.Direction.INBOUND,
            conversation__in=conversations,
            created_at__gte=now - since,
            created_at__lte=now - grace,
        )
        .exclude(status=Message.Status.IGNORED)
        .filter(pk=Subquery(latest_inbound.values("pk")[:1]))
    )
    live_reply = _live_answers(OuterRef("conversation_id")).filter(_answers(of=None))
    return (
        candidates.filter(~Exists(live_reply))
        .select_related("conversation__lead", "chip")
        .order_by("created_at")
    )


def stuck_messages(*, spare_in_line: bool = False) -> QuerySet[Message]:
    """Lead messages that are the last of their conversation, unanswered for 2 to 30 minutes.

    The stuck-bot plan's case: the message was saved, processing died, the bot
    never advanced. Each message is recovered at most once (an AgentRun with
    trigger `recovery` is the guard), so a message that keeps failing cannot loop.

    `spare_in_line` (the agent's queue has a line that a live cluster works
    through): a message no turn has taken up yet (no turn ran on it and no
    worker holds its conversation) is waiting for its task, not lost, until
    AGENT_TASK_LOST_SECONDS; answering it here would only race its task. A
    turn that ran and left it unanswered, or a worker that died holding the
    conversation, is recovered at the usual age.
    """
    now = timezone.now()
    newest = timedelta(seconds=settings.AGENT_RECOVERY_MIN_AGE_SECONDS)
    oldest = timedelta(seconds=settings.AGENT_RECOVERY_MAX_AGE_SECONDS)
    last_message = Message.objects.filter(conversation=OuterRef("conversation")).order_by(
        "-created_at", "-pk"
    )
    recovered = AgentRun.objects.filter(message=OuterRef("pk"), trigger=AgentRun.Trigger.RECOVERY)
    stuck = (
        unanswered_messages(since=oldest, grace=newest)
        .filter(conversation__last_inbound_at__gte=now - oldest)
        .filter(pk=Subquery(last_message.values("pk")[:1]))
        .filter(~Exists(recovered))
    )
    if spare_in_line:
        taken_up = Exists(AgentRun.objects.filter(message=OuterRef("pk"))) | Exists(
            ConversationLease.objects.filter(conversation=OuterRef("conversation"))
        )
        lost = now - timedelta(seconds=settings.AGENT_TASK_LOST_SECONDS)
        stuck = stuck.filter(taken_up | Q(created_at__lt=lost))
    return stuck
