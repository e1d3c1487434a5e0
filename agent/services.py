"""The agent's writes: answering a lead's turn, reprocessing, recovering stuck conversations.

One turn, one reply. A turn is every inbound message of the lead not yet
answered (newer than the last live reply or human message); its reply is one
or more outbound messages whose `reply_to` is the turn's last message. A
message counts as answered while such a reply exists and has not failed or
been cancelled, which is what makes reprocessing safe: processing the same
message again finds it answered and sends nothing.

One conversation is answered by one worker at a time (`ConversationLease`).
A message that arrives while another worker holds the conversation is left to
that worker, which looks for new messages after releasing the lease.

Never silence, never a traceback to the lead: when the model fails (or there
is no model), the profile's fallback reply goes out and, by default, a human
takes over; the error is kept on the conversation and on the AgentRun.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from agent import flows
from agent.llm import LlmError, ToolCall, llm_chat, llm_configured, split_reply
from agent.models import (
    DEFAULT_CLOSING_MESSAGE,
    AgentProfile,
    AgentRun,
    ConversationLease,
    FlowStep,
)
from conversations.handoffs import handoff_open
from conversations.models import Conversation, Handoff, Lead, Message
from conversations.outbox import outbox_enqueue
from core.metrics import histogram_observe

logger = logging.getLogger(__name__)

ANSWER_TASK = "agent.tasks.answer_message"
# An outbound message that answers the lead: the agent's reply, or the system
# notice of a handoff (which must leave even though a human now has the thread).
ANSWER_PURPOSES = (Message.Purpose.REPLY, Message.Purpose.SYSTEM)
# Outbound messages without a `reply_to` that still answer what the lead wrote before them.
UNLINKED_ANSWER_PURPOSES = (Message.Purpose.REPLY, Message.Purpose.SYSTEM, Message.Purpose.HUMAN)
DEAD_STATUSES = (Message.Status.FAILED, Message.Status.CANCELLED)
MAX_TURN_MESSAGES = 50
NO_MODEL_ERROR = "LLM não configurado (OPENAI_API_KEY vazia): resposta de fallback"


@dataclass
class ProcessResult:
    """What one processing run did; `status` is one of the constants below."""

    status: str
    detail: str = ""
    run_id: int | None = None
    replies: int = 0
    message_id: int | None = None  # the turn's last message (the reply's reply_to)


REPLIED = "replied"
HANDOFF = "handoff"
FALLBACK = "fallback"
OPTED_OUT = "opted_out"
ANSWERED = "already_answered"
SKIPPED = "skipped"
BUSY = "busy"
MISSING = "missing"


# --- The seam: ingest -> task ------------------------------------------------------------


def agent_enqueue(message_id: int) -> None:
    """AGENT_HOOKS entry: answer the message in a worker, never in the webhook's process.

    A broker failure is logged, not raised: the message is stored, and the
    stuck-conversation recovery answers it after a couple of minutes.
    """
    from django_q.tasks import async_task

    try:
        async_task(ANSWER_TASK, message_id, group="agent")
    except Exception:
        logger.exception("agent: could not enqueue the answer of message %s", message_id)


# --- Who answers, and may they ------------------------------------------------------------


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


def _default_profile() -> AgentProfile:
    # Unsaved: the model's defaults (fallback, keywords, texts) with the
    # settings' system prompt, for chips nobody configured.
    return AgentProfile(name="(padrão)", system_prompt=settings.AGENT_DEFAULT_SYSTEM_PROMPT)


def why_not_answer(*, conversation: Conversation) -> str:
    """Empty when the agent may answer this conversation; otherwise the pt-BR reason."""
    if conversation.status != Conversation.Status.OPEN:
        return "Conversa encerrada"
    if conversation.controlled_by == Conversation.ControlledBy.HUMAN:
        return "Conversa com um humano"
    if conversation.agent_paused:
        return "Agente pausado nesta conversa"
    if conversation.lead.opted_out:
        return "Lead pediu para não receber mensagens (opt-out)"
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


def _wait_for_quiet(*, conversation_id: int, turn: list[Message]) -> list[Message]:
    """Let a burst finish: wait until the lead has been quiet for the window (bounded)."""
    window = settings.AGENT_BURST_WINDOW_SECONDS
    started = time.monotonic()
    while window > 0:
        quiet_for = (timezone.now() - turn[-1].created_at).total_seconds()
        budget = settings.AGENT_BURST_MAX_WAIT_SECONDS - (time.monotonic() - started)
        if quiet_for >= window or budget <= 0:
            break
        time.sleep(min(window - quiet_for, budget))
        turn = pending_turn(conversation_id=conversation_id) or turn
    return turn


# --- The lease: one worker per conversation --------------------------------------------------


def lease_acquire(*, conversation_id: int) -> str | None:
    """Claim the conversation for this worker; None when another worker holds it."""
    token = uuid.uuid4().hex
    now = timezone.now()
    expires_at = now + timedelta(seconds=settings.AGENT_LEASE_SECONDS)
    taken_over = ConversationLease.objects.filter(
        conversation_id=conversation_id, expires_at__lt=now
    ).update(token=token, expires_at=expires_at, acquired_at=now)
    if taken_over:
        logger.warning("agent: took over the expired lease of conversation %s", conversation_id)
        return token
    try:
        with transaction.atomic():
            ConversationLease.objects.create(
                conversation_id=conversation_id, token=token, expires_at=expires_at
            )
    except IntegrityError:
        return None
    return token


def lease_release(*, conversation_id: int, token: str) -> None:
    ConversationLease.objects.filter(conversation_id=conversation_id, token=token).delete()


# --- Processing -----------------------------------------------------------------------------


@dataclass
class _Plan:
    """What a turn decided, applied in one transaction by `_apply`."""

    kind: str
    outcome: str
    replies: list[str] = field(default_factory=list)
    purpose: str = Message.Purpose.REPLY
    handoff: tuple[str, str] | None = None  # (reason, note)
    opt_out: bool = False
    close: bool = False
    flow_step: str | None = None
    flow_data: dict[str, Any] | None = None
    lead_updates: dict[str, Any] = field(default_factory=dict)
    lead_notes: list[str] = field(default_factory=list)
    error: str = ""
    model: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    llm_ms: int | None = None


def message_reply(
    *, message_id: int, trigger: str = AgentRun.Trigger.INBOUND, force: bool = False
) -> ProcessResult:
    """Answer the turn an inbound message belongs to (the worker task's entry point).

    Without `force` nothing is sent when the message is already answered.
    With `force` (ops) the message and everything the lead wrote after it are
    answered again.
    """
    message = (
        Message.objects.filter(pk=message_id, direction=Message.Direction.INBOUND)
        .only("pk", "conversation_id", "created_at")
        .first()
    )
    if message is None:
        return ProcessResult(status=MISSING, detail="Mensagem recebida não encontrada")
    result = _process_with_lease(
        conversation_id=message.conversation_id, trigger=trigger, target=message, force=force
    )
    if result.status in (BUSY, SKIPPED):
        return result
    # A message that arrived while we held the conversation had its own task
    # give up (busy): it needs a new task. Looked for after releasing the
    # lease, so a message committed at any moment is seen either here or by
    # its own task. A new task rather than a loop here: the task's time limit
    # holds one turn, not several.
    turn = pending_turn(conversation_id=message.conversation_id)
    if turn and (result.message_id is None or turn[-1].pk > result.message_id):
        agent_enqueue(turn[-1].pk)
    return result


def _process_with_lease(
    *, conversation_id: int, trigger: str, target: Message | None, force: bool = False
) -> ProcessResult:
    token = lease_acquire(conversation_id=conversation_id)
    if token is None:
        return ProcessResult(status=BUSY, detail="Outro worker está respondendo esta conversa")
    try:
        return _process_turn(
            conversation_id=conversation_id, trigger=trigger, target=target, force=force
        )
    finally:
        lease_release(conversation_id=conversation_id, token=token)


def _load(conversation_id: int) -> Conversation:
    return Conversation.objects.select_related(
        "lead", "chip__agent_profile__flow", "agent_profile__flow"
    ).get(pk=conversation_id)


def _process_turn(
    *, conversation_id: int, trigger: str, target: Message | None, force: bool
) -> ProcessResult:
    conversation = _load(conversation_id)
    reason = why_not_answer(conversation=conversation)
    if reason:
        return ProcessResult(status=SKIPPED, detail=reason)

    if force and target is not None:
        turn = list(
            Message.objects.filter(
                conversation_id=conversation_id,
                direction=Message.Direction.INBOUND,
                created_at__gte=target.created_at,
            )
            .exclude(status=Message.Status.IGNORED)
            .order_by("created_at", "pk")[:MAX_TURN_MESSAGES]
        )
    else:
        turn = pending_turn(conversation_id=conversation_id)
        if target is not None and target.pk not in {m.pk for m in turn}:
            return ProcessResult(status=ANSWERED, detail="Mensagem já respondida")
    if not turn:
        return ProcessResult(status=ANSWERED, detail="Nada a responder")

    if trigger == AgentRun.Trigger.INBOUND:
        turn = _wait_for_quiet(conversation_id=conversation_id, turn=turn)
        conversation = _load(conversation_id)
        reason = why_not_answer(conversation=conversation)
        if reason:  # a human took over while the lead was still typing
            return ProcessResult(status=SKIPPED, detail=reason)

    profile = profile_for(conversation=conversation) or _default_profile()
    run = AgentRun.objects.create(
        conversation=conversation,
        message=turn[-1],
        profile=profile if profile.pk else None,
        kind=AgentRun.Kind.LLM,
        trigger=trigger,
        outcome=AgentRun.Outcome.RUNNING,
    )
    started = time.monotonic()
    try:
        plan = _decide(conversation=conversation, profile=profile, turn=turn)
    except Exception as exc:
        # A bug of ours must not leave the lead in silence either.
        logger.exception("agent: run %s failed", run.pk)
        plan = _failure_plan(profile=profile, kind=AgentRun.Kind.FALLBACK, error=_describe(exc))
    with transaction.atomic():
        replies = _apply(conversation=conversation, plan=plan, turn=turn)
        run.latency_ms = plan.llm_ms if plan.llm_ms is not None else _ms_since(started)
        run.kind = plan.kind
        run.outcome = plan.outcome
        run.error = plan.error[:5000]
        run.model = plan.model[:100]
        run.prompt_tokens = plan.prompt_tokens
        run.completion_tokens = plan.completion_tokens
        run.tool_calls = plan.tool_calls
        run.finished_at = timezone.now()
        run.save()
    status = {
        AgentRun.Outcome.HANDOFF: HANDOFF,
        AgentRun.Outcome.FALLBACK: FALLBACK,
    }.get(plan.outcome, OPTED_OUT if plan.opt_out else REPLIED)
    return ProcessResult(
        status=status,
        detail=plan.error,
        run_id=run.pk,
        replies=len(replies),
        message_id=turn[-1].pk,
    )


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


# --- Deciding the reply -----------------------------------------------------------------------


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9@]+", flows.normalize(text)))


def matches_opt_out(*, text: str, keywords: Sequence[str]) -> bool:
    """ "sair", "Parar!", "quero sair", "STOP": the keyword is the message, or most of it.

    Matching anywhere would opt out "não consigo parar de pensar na festa".
    """
    plain = _words(text)
    for keyword in keywords:
        word = _words(str(keyword))
        if not word:
            continue
        if plain == word or (
            len(plain.split()) <= 4 and re.search(rf"\b{re.escape(word)}\b", plain)
        ):
            return True
    return False


def matches_handoff(*, text: str, keywords: Sequence[str]) -> bool:
    """ "quero falar com um atendente": a handoff keyword anywhere in the message."""
    plain = _words(text)
    return any(
        (word := _words(str(keyword))) and re.search(rf"\b{re.escape(word)}\b", plain)
        for keyword in keywords
    )


def _decide(*, conversation: Conversation, profile: AgentProfile, turn: list[Message]) -> _Plan:
    texts = [message.body for message in turn]
    if any(matches_opt_out(text=t, keywords=profile.opt_out_keywords or []) for t in texts):
        return _Plan(
            kind=AgentRun.Kind.KEYWORD,
            outcome=AgentRun.Outcome.REPLIED,
            replies=[profile.opt_out_confirmation],
            opt_out=True,
        )
    if any(matches_handoff(text=t, keywords=profile.handoff_keywords or []) for t in texts):
        return _Plan(
            kind=AgentRun.Kind.KEYWORD,
            outcome=AgentRun.Outcome.HANDOFF,
            replies=[profile.handoff_reply],
            purpose=Message.Purpose.SYSTEM,
            handoff=(Handoff.Reason.LEAD_REQUEST, f"Lead escreveu: {texts[-1][:200]}"),
        )
    if profile.flow_id and conversation.flow_step != flows.FLOW_DONE:
        return _flow_plan(conversation=conversation, profile=profile, texts=texts)
    return _llm_plan(conversation=conversation, profile=profile, turn=turn)


def _flow_plan(*, conversation: Conversation, profile: AgentProfile, texts: list[str]) -> _Plan:
    steps: list[FlowStep] = list(profile.flow.steps.all())
    outcome = flows.flow_turn(
        steps=steps,
        current_step=conversation.flow_step,
        data=conversation.flow_data or {},
        answers=texts,
        today=timezone.localdate(),
    )
    plan = _Plan(
        kind=AgentRun.Kind.FLOW,
        outcome=AgentRun.Outcome.REPLIED,
        flow_step=outcome.step,
        flow_data=outcome.data,
    )
    if not outcome.finished:
        plan.replies = [outcome.reply]
        return plan
    # The last answer is in: the flow ends the way the profile says.
    lead_name = outcome.data.get("nome") or outcome.data.get("name")
    if isinstance(lead_name, str) and not conversation.lead.name:
        plan.lead_updates["name"] = lead_name
    end = profile.on_flow_end
    if end == AgentProfile.FlowEnd.HANDOFF:
        plan.outcome = AgentRun.Outcome.HANDOFF
        plan.replies = [profile.closing_message or profile.handoff_reply]
        plan.purpose = Message.Purpose.SYSTEM
        plan.handoff = (
            Handoff.Reason.AGENT_DECISION,
            f"Qualificação concluída ({profile.flow.name}): {_summary(outcome.data)}",
        )
        return plan
    if end == AgentProfile.FlowEnd.LLM and not profile.closing_message:
        conversation.flow_data = outcome.data
        llm = _llm_plan(conversation=conversation, profile=profile, turn=None)
        llm.flow_step, llm.flow_data = outcome.step, outcome.data
        llm.lead_updates = {**plan.lead_updates, **llm.lead_updates}
        return llm
    plan.replies = [profile.closing_message or DEFAULT_CLOSING_MESSAGE]
    return plan


def _summary(data: dict[str, Any]) -> str:
    return ", ".join(f"{key}: {value}" for key, value in data.items()) or "sem dados"


def _failure_plan(*, profile: AgentProfile, kind: str, error: str) -> _Plan:
    plan = _Plan(
        kind=kind, outcome=AgentRun.Outcome.FALLBACK, replies=[profile.fallback_reply], error=error
    )
    if profile.handoff_on_failure:
        plan.purpose = Message.Purpose.SYSTEM
        plan.handoff = (Handoff.Reason.AGENT_FAILURE, error[:500])
    return plan


_KIND_LABELS = {
    Message.Kind.IMAGE: "uma imagem",
    Message.Kind.AUDIO: "um áudio",
    Message.Kind.VIDEO: "um vídeo",
    Message.Kind.DOCUMENT: "um documento",
    Message.Kind.STICKER: "uma figurinha",
    Message.Kind.LOCATION: "uma localização",
    Message.Kind.CONTACT: "um contato",
}


def _content(message: Message) -> str:
    if message.body:
        return message.body
    return f"[o lead enviou {_KIND_LABELS.get(message.kind, 'uma mensagem sem texto')}]"


def llm_messages(
    *, conversation: Conversation, profile: AgentProfile, minimum: int = 1
) -> list[dict[str, Any]]:
    """The system prompt and the conversation's last `history_window` messages, oldest first."""
    window = max(profile.history_window or 1, minimum)
    history = list(
        Message.objects.filter(conversation=conversation)
        .exclude(direction=Message.Direction.OUTBOUND, status__in=DEAD_STATUSES)
        .exclude(direction=Message.Direction.INBOUND, status=Message.Status.IGNORED)
        .order_by("-created_at", "-pk")[:window]
    )
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": _system_prompt(conversation, profile)}
    ]
    for message in reversed(history):
        role = "user" if message.direction == Message.Direction.INBOUND else "assistant"
        messages.append({"role": role, "content": _content(message)})
    return messages


def _system_prompt(conversation: Conversation, profile: AgentProfile) -> str:
    parts = [profile.system_prompt or settings.AGENT_DEFAULT_SYSTEM_PROMPT]
    if profile.persona:
        parts.append(f"Você se apresenta como: {profile.persona}.")
    lead = conversation.lead
    known = {"nome": lead.name, "e-mail": lead.email, "empresa": lead.company}
    facts = [f"{label}: {value}" for label, value in known.items() if value]
    facts += [f"{key}: {value}" for key, value in (conversation.flow_data or {}).items()]
    if facts:
        parts.append("O que já sabemos do lead: " + "; ".join(facts) + ".")
    parts.append(f"Hoje é {timezone.localdate():%d/%m/%Y}.")
    parts.append(
        "Escreva como no WhatsApp: mensagens curtas, sem markdown. Use request_handoff para "
        "passar a conversa a um humano, update_lead para registrar dados do lead e "
        "end_conversation quando a conversa terminar."
    )
    return "\n\n".join(parts)


def _llm_plan(
    *,
    conversation: Conversation,
    profile: AgentProfile,
    turn: list[Message] | None,
) -> _Plan:
    if not llm_configured():
        return _failure_plan(profile=profile, kind=AgentRun.Kind.FALLBACK, error=NO_MODEL_ERROR)
    model = profile.model or settings.OPENAI_MODEL
    plan = _Plan(kind=AgentRun.Kind.LLM, outcome=AgentRun.Outcome.REPLIED, model=model)

    def handle(call: ToolCall) -> str:
        plan.tool_calls.append({"name": call.name, "arguments": call.arguments})
        args = call.arguments
        if call.name == "request_handoff":
            reason = str(args.get("reason") or "Agente decidiu transferir")[:500]
            plan.handoff = (Handoff.Reason.AGENT_DECISION, reason)
            return json.dumps({"ok": True, "info": "Um humano vai assumir a conversa."})
        if call.name == "update_lead":
            for name in ("name", "email", "company"):
                value = str(args.get(name) or "").strip()
                if value:
                    plan.lead_updates[name] = value[:200]
            if args.get("notes"):
                plan.lead_notes.append(str(args["notes"])[:1000])
            return json.dumps({"ok": True})
        plan.close = True  # end_conversation
        return json.dumps({"ok": True, "info": "Conversa será encerrada após a sua mensagem."})

    minimum = len(turn) if turn else 1
    started = time.monotonic()
    try:
        result = llm_chat(
            messages=llm_messages(conversation=conversation, profile=profile, minimum=minimum),
            model=model,
            temperature=float(profile.temperature),
            tool_handler=handle,
        )
    except LlmError as exc:
        failed = _failure_plan(profile=profile, kind=AgentRun.Kind.LLM, error=str(exc)[:2000])
        failed.model, failed.tool_calls, failed.llm_ms = model, plan.tool_calls, _ms_since(started)
        return failed
    plan.llm_ms = _ms_since(started)
    plan.model = result.model
    plan.prompt_tokens = result.prompt_tokens
    plan.completion_tokens = result.completion_tokens
    text = result.text
    if plan.handoff is not None:
        plan.outcome = AgentRun.Outcome.HANDOFF
        plan.purpose = Message.Purpose.SYSTEM
        text = text or profile.handoff_reply
    elif plan.close:
        text = text or profile.closing_message or DEFAULT_CLOSING_MESSAGE
    if not text:
        return _failure_plan(
            profile=profile, kind=AgentRun.Kind.LLM, error="invalid_response: resposta vazia"
        )
    plan.replies = split_reply(text)
    return plan


# --- Applying it -----------------------------------------------------------------------------


def _apply(*, conversation: Conversation, plan: _Plan, turn: list[Message]) -> list[Message]:
    now = timezone.now()
    last = turn[-1]
    replies = [
        outbox_enqueue(conversation=conversation, body=body, purpose=plan.purpose, reply_to=last)
        for body in plan.replies
        if body.strip()
    ]
    Message.objects.filter(pk__in=[m.pk for m in turn]).update(
        status=Message.Status.PROCESSED, processed_at=now, updated_at=now
    )
    # The error also stays on the message it concerns, for the ops' message filters.
    Message.objects.filter(pk=last.pk).update(last_error=plan.error)
    fields: dict[str, Any] = {"updated_at": now}
    if plan.flow_step is not None:
        fields["flow_step"] = plan.flow_step
        fields["flow_data"] = plan.flow_data or {}
    if plan.error:
        fields["last_error"] = plan.error
        fields["last_error_at"] = now
    elif conversation.last_error:
        fields["last_error"] = ""
    if plan.close and plan.handoff is None:
        fields["status"] = Conversation.Status.CLOSED
        fields["closed_at"] = now
    Conversation.objects.filter(pk=conversation.pk).update(**fields)
    _lead_apply(lead=conversation.lead, plan=plan, now=now)
    if plan.handoff is not None:
        reason, note = plan.handoff
        handoff_open(conversation=conversation, reason=reason, note=note)
    if replies:
        histogram_observe("agent_response_seconds", (now - last.created_at).total_seconds())
    return replies


def _lead_apply(*, lead: Lead, plan: _Plan, now: Any) -> None:
    fields: list[str] = []
    if plan.opt_out and not lead.opted_out:
        lead.opted_out, lead.opted_out_at = True, now
        fields += ["opted_out", "opted_out_at"]
    for name, value in plan.lead_updates.items():
        if name == "email" and "@" not in value:
            continue
        if getattr(lead, name) != value:
            setattr(lead, name, value)
            fields.append(name)
    if plan.lead_notes:
        notes = [*lead.attributes.get("agent_notes", []), *plan.lead_notes][-20:]
        lead.attributes = {**lead.attributes, "agent_notes": notes}
        fields.append("attributes")
    if fields:
        lead.save(update_fields=[*fields, "updated_at"])


# --- Reprocessing (admin action, reprocess_failed) ----------------------------------------


def reprocess_message(*, message: Message, force: bool = False) -> ProcessResult:
    """Answer an inbound message again, unless it already has a live reply (`force` for ops).

    The check runs again under the conversation's lease, so two reprocessings
    at once still send one reply.
    """
    if message.direction != Message.Direction.INBOUND:
        return ProcessResult(
            status=SKIPPED, detail="Só mensagens recebidas podem ser reprocessadas"
        )
    if not force and message_is_answered(message=message):
        return ProcessResult(status=ANSWERED, detail="Mensagem já respondida")
    return message_reply(message_id=message.pk, trigger=AgentRun.Trigger.REPROCESS, force=force)


def message_reprocess_by_id(*, message_id: int, force: bool = False) -> ProcessResult:
    message = Message.objects.filter(pk=message_id).first()
    if message is None:
        return ProcessResult(status=MISSING, detail="Mensagem não encontrada")
    return reprocess_message(message=message, force=force)


@dataclass
class ReprocessRequest:
    queued: int = 0
    answered: int = 0
    not_inbound: int = 0


def messages_reprocess_enqueue(
    *, messages: Sequence[Message], force: bool = False
) -> ReprocessRequest:
    """The admin's "Reprocess": answered messages are counted and left alone, others queued.

    The worker checks again under the conversation's lease, so a message
    answered in between still gets one reply.
    """
    from django_q.tasks import async_task

    report = ReprocessRequest()
    for message in messages:
        if message.direction != Message.Direction.INBOUND:
            report.not_inbound += 1
        elif not force and message_is_answered(message=message):
            report.answered += 1
        else:
            message_id = message.pk
            transaction.on_commit(
                lambda message_id=message_id: async_task(
                    "agent.tasks.reprocess_message", message_id, force, group="agent"
                )
            )
            report.queued += 1
    return report


def conversation_last_inbound(*, conversation: Conversation) -> Message | None:
    return (
        Message.objects.filter(conversation=conversation, direction=Message.Direction.INBOUND)
        .order_by("-created_at", "-pk")
        .first()
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


@dataclass
class BatchReport:
    found: int = 0
    results: list[tuple[Message, ProcessResult | None]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, result in self.results:
            status = result.status if result else "dry_run"
            counts[status] = counts.get(status, 0) + 1
        return counts


def reprocess_failed(
    *, since: timedelta, phone: str | None = None, dry_run: bool = False, limit: int = 500
) -> BatchReport:
    """The runbook's batch option: answer every conversation left without a reply."""
    messages = list(unanswered_messages(since=since, phone=phone)[:limit])
    report = BatchReport(found=len(messages))
    for message in messages:
        result = None if dry_run else reprocess_message(message=message)
        report.results.append((message, result))
    return report


# --- Recovery of stuck conversations (the periodic task, recover_stuck) ---------------


def stuck_messages() -> QuerySet[Message]:
    """Lead messages that are the last of their conversation, unanswered for 2 to 30 minutes.

    The stuck-bot plan's case: the message was saved, processing died, the bot
    never advanced. Each message is recovered at most once (an AgentRun with
    trigger `recovery` is the guard), so a message that keeps failing cannot loop.
    """
    now = timezone.now()
    newest = timedelta(seconds=settings.AGENT_RECOVERY_MIN_AGE_SECONDS)
    oldest = timedelta(seconds=settings.AGENT_RECOVERY_MAX_AGE_SECONDS)
    last_message = Message.objects.filter(conversation=OuterRef("conversation")).order_by(
        "-created_at", "-pk"
    )
    recovered = AgentRun.objects.filter(message=OuterRef("pk"), trigger=AgentRun.Trigger.RECOVERY)
    return (
        unanswered_messages(since=oldest, grace=newest)
        .filter(conversation__last_inbound_at__gte=now - oldest)
        .filter(pk=Subquery(last_message.values("pk")[:1]))
        .filter(~Exists(recovered))
    )


def conversations_recover_stuck(*, dry_run: bool = False, limit: int = 200) -> BatchReport:
    """Reprocess each stuck conversation's last message once."""
    messages = list(stuck_messages()[:limit])
    report = BatchReport(found=len(messages))
    for message in messages:
        result = None
        if not dry_run:
            result = message_reply(message_id=message.pk, trigger=AgentRun.Trigger.RECOVERY)
            logger.warning(
                "agent: recovered stuck conversation %s (message %s): %s",
                message.conversation_id,
                message.pk,
                result.status,
            )
        report.results.append((message, result))
    return report
