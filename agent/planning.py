"""What a turn decides: opt-out and handoff keywords, the scripted flow, the LLM.

Pure of writes: a `TurnPlan` says what to send and change, and
`agent.turns` applies it in one transaction.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _

from agent import flows
from agent.llm import LlmError, ToolCall, llm_chat, llm_configured, split_reply
from agent.models import (
    AgentProfile,
    AgentRun,
    FlowStep,
    default_closing_message,
    default_system_prompt,
)
from agent.selectors import DEAD_STATUSES
from conversations.models import Conversation, Handoff, Message
from conversations.ordering import messages_in_lead_order

NO_MODEL_ERROR = gettext_noop("LLM not configured (OPENAI_API_KEY empty): fallback reply")


@dataclass
class TurnPlan:
    """What a turn decided, applied in one transaction by `agent.turns`."""

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


def ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def describe_error(exc: BaseException) -> str:
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


def plan_turn(
    *, conversation: Conversation, profile: AgentProfile, turn: list[Message]
) -> TurnPlan:
    # Stored order is not always the order the lead wrote in (conversations/ordering.py).
    turn = messages_in_lead_order(turn)
    texts = [message.body for message in turn]
    if any(matches_opt_out(text=t, keywords=profile.opt_out_keywords or []) for t in texts):
        return TurnPlan(
            kind=AgentRun.Kind.KEYWORD,
            outcome=AgentRun.Outcome.REPLIED,
            replies=[profile.opt_out_confirmation],
            opt_out=True,
        )
    if any(matches_handoff(text=t, keywords=profile.handoff_keywords or []) for t in texts):
        return TurnPlan(
            kind=AgentRun.Kind.KEYWORD,
            outcome=AgentRun.Outcome.HANDOFF,
            replies=[profile.handoff_reply],
            purpose=Message.Purpose.SYSTEM,
            handoff=(
                Handoff.Reason.LEAD_REQUEST,
                gettext("Lead wrote: %(text)s") % {"text": texts[-1][:200]},
            ),
        )
    if profile.flow_id and conversation.flow_step != flows.FLOW_DONE:
        return _flow_plan(conversation=conversation, profile=profile, texts=texts)
    return _llm_plan(conversation=conversation, profile=profile, turn=turn)


def _flow_plan(*, conversation: Conversation, profile: AgentProfile, texts: list[str]) -> TurnPlan:
    steps: list[FlowStep] = list(profile.flow.steps.all())
    outcome = flows.flow_turn(
        steps=steps,
        current_step=conversation.flow_step,
        data=conversation.flow_data or {},
        answers=texts,
        today=timezone.localdate(),
    )
    plan = TurnPlan(
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
            gettext("Qualification finished (%(flow)s): %(summary)s")
            % {"flow": profile.flow.name, "summary": _summary(outcome.data)},
        )
        return plan
    if end == AgentProfile.FlowEnd.LLM and not profile.closing_message:
        conversation.flow_data = outcome.data
        llm = _llm_plan(conversation=conversation, profile=profile, turn=None)
        llm.flow_step, llm.flow_data = outcome.step, outcome.data
        llm.lead_updates = {**plan.lead_updates, **llm.lead_updates}
        return llm
    plan.replies = [profile.closing_message or default_closing_message()]
    return plan


def _summary(data: dict[str, Any]) -> str:
    return ", ".join(f"{key}: {value}" for key, value in data.items()) or gettext("no data")


def failure_plan(*, profile: AgentProfile, kind: str, error: str) -> TurnPlan:
    plan = TurnPlan(
        kind=kind, outcome=AgentRun.Outcome.FALLBACK, replies=[profile.fallback_reply], error=error
    )
    if profile.handoff_on_failure:
        plan.purpose = Message.Purpose.SYSTEM
        plan.handoff = (Handoff.Reason.AGENT_FAILURE, error[:500])
    return plan


_KIND_LABELS = {
    Message.Kind.IMAGE: _("the lead sent an image"),
    Message.Kind.AUDIO: _("the lead sent an audio"),
    Message.Kind.VIDEO: _("the lead sent a video"),
    Message.Kind.DOCUMENT: _("the lead sent a document"),
    Message.Kind.STICKER: _("the lead sent a sticker"),
    Message.Kind.LOCATION: _("the lead sent a location"),
    Message.Kind.CONTACT: _("the lead sent a contact"),
}


def _content(message: Message) -> str:
    if message.body:
        return message.body
    label = _KIND_LABELS.get(message.kind) or gettext("the lead sent a message without text")
    return f"[{label}]"


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
    for message in messages_in_lead_order(list(reversed(history))):
        role = "user" if message.direction == Message.Direction.INBOUND else "assistant"
        messages.append({"role": role, "content": _content(message)})
    return messages


def _system_prompt(conversation: Conversation, profile: AgentProfile) -> str:
    parts = [profile.system_prompt or default_system_prompt()]
    if profile.persona:
        parts.append(
            gettext("You introduce yourself as: %(persona)s.") % {"persona": profile.persona}
        )
    lead = conversation.lead
    known = {
        gettext("name"): lead.name,
        gettext("email"): lead.email,
        gettext("company"): lead.company,
    }
    facts = [f"{label}: {value}" for label, value in known.items() if value]
    facts += [f"{key}: {value}" for key, value in (conversation.flow_data or {}).items()]
    if facts:
        parts.append(
            gettext("What we already know about the lead: %(facts)s.") % {"facts": "; ".join(facts)}
        )
    parts.append(gettext("Today is %(date)s.") % {"date": f"{timezone.localdate():%d/%m/%Y}"})
    parts.append(
        gettext(
            "Write as on WhatsApp: short messages, no markdown. Use request_handoff to hand the "
            "conversation to a human, update_lead to record the lead's details and "
            "end_conversation when the conversation is over."
        )
    )
    return "\n\n".join(parts)


def _llm_plan(
    *,
    conversation: Conversation,
    profile: AgentProfile,
    turn: list[Message] | None,
) -> TurnPlan:
    if not llm_configured():
        return failure_plan(
            profile=profile, kind=AgentRun.Kind.FALLBACK, error=gettext(NO_MODEL_ERROR)
        )
    model = profile.model or settings.OPENAI_MODEL
    plan = TurnPlan(kind=AgentRun.Kind.LLM, outcome=AgentRun.Outcome.REPLIED, model=model)

    def handle(call: ToolCall) -> str:
        plan.tool_calls.append({"name": call.name, "arguments": call.arguments})
        args = call.arguments
        if call.name == "request_handoff":
            reason = str(args.get("reason") or gettext("The agent decided to hand over"))[:500]
            plan.handoff = (Handoff.Reason.AGENT_DECISION, reason)
            return json.dumps(
                {"ok": True, "info": gettext("A human will take over the conversation.")}
            )
        if call.name == "update_lead":
            for name in ("name", "email", "company"):
                value = str(args.get(name) or "").strip()
                if value:
                    plan.lead_updates[name] = value[:200]
            if args.get("notes"):
                plan.lead_notes.append(str(args["notes"])[:1000])
            return json.dumps({"ok": True})
        plan.close = True  # end_conversation
        return json.dumps(
            {"ok": True, "info": gettext("The conversation will be closed after your message.")}
        )

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
        failed = failure_plan(profile=profile, kind=AgentRun.Kind.LLM, error=str(exc)[:2000])
        failed.model, failed.tool_calls, failed.llm_ms = model, plan.tool_calls, ms_since(started)
        return failed
    plan.llm_ms = ms_since(started)
    plan.model = result.model
    plan.prompt_tokens = result.prompt_tokens
    plan.completion_tokens = result.completion_tokens
    text = result.text
    if plan.handoff is not None:
        plan.outcome = AgentRun.Outcome.HANDOFF
        plan.purpose = Message.Purpose.SYSTEM
        text = text or profile.handoff_reply
    elif plan.close:
        text = text or profile.closing_message or default_closing_message()
    if not text:
        return failure_plan(
            profile=profile, kind=AgentRun.Kind.LLM, error="invalid_response: resposta vazia"
        )
    plan.replies = split_reply(text)
    return plan


# --- Applying it -----------------------------------------------------------------------------
