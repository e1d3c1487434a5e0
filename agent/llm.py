"""The LLM behind the agent: the only module that imports `openai`.

Any OpenAI-compatible server works (`OPENAI_BASE_URL`). This module knows the
wire: it sends a conversation, lets the model call our tools through a
handler the caller supplies, retries what is worth retrying and reports
tokens and latency. What the tools do to our data is the caller's business
(agent/turns.py, agent/planning.py), so nothing here writes to the database.

Retries are ours, not the SDK's (`max_retries=0`): a timeout, a 429, a
connection error or a 5xx is tried again with exponential backoff (or the
server's Retry-After, capped) within one time budget, so a run can never
outlive the worker task that runs it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from django.conf import settings
from django.utils.translation import gettext

from channels.http import retry_after_seconds, tls_context

logger = logging.getLogger(__name__)


def tools() -> list[dict[str, Any]]:
    """The tools offered to the model, described in the active language (the prompt's)."""
    return [
        {
            "type": "function",
            "function": {
                "name": "request_handoff",
                "description": gettext(
                    "Hands the conversation to a human attendant. Use it when the lead asks for "
                    "a person, complains, negotiates the price or brings something you cannot "
                    "solve."
                ),
                "parameters": {
                    "type": "object",
                    "properties": {
                        "reason": {
                            "type": "string",
                            "description": gettext("Reason, in a few words"),
                        }
                    },
                    "required": ["reason"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "update_lead",
                "description": gettext("Records details the lead gave about themselves."),
                "parameters": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "description": gettext("Lead's name")},
                        "email": {"type": "string", "description": gettext("Lead's email")},
                        "company": {"type": "string", "description": gettext("Lead's company")},
                        "notes": {
                            "type": "string",
                            "description": gettext("Other information useful to the sales team"),
                        },
                    },
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "end_conversation",
                "description": gettext(
                    "Closes the conversation when the lead said goodbye or there is nothing "
                    "left to do. Write the goodbye message too."
                ),
                "parameters": {
                    "type": "object",
                    "properties": {"reason": {"type": "string"}},
                },
            },
        },
    ]


TOOL_NAMES = frozenset({"request_handoff", "update_lead", "end_conversation"})


class LlmError(Exception):
    """The model could not give an answer. `kind` says why, for AgentRun and last_error."""

    def __init__(self, kind: str, detail: str, *, attempts: int = 0) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.attempts = attempts


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class LlmResult:
    text: str
    model: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    rounds: int = 0


ToolHandler = Callable[[ToolCall], str]


def llm_configured() -> bool:
    """Whether there is a model to ask; without a key the agent runs on flows and fallbacks."""
    return bool(settings.OPENAI_API_KEY)


_clients: dict[tuple[str, str, float], openai.OpenAI] = {}


def llm_client(*, http_client: Any = None) -> openai.OpenAI:
    """A client for the configured server; `http_client` is the tests' transport seam.

    One per process and configuration, reused by every turn: a new client
    builds a new connection pool and TLS context (which reads the whole CA
    bundle), a quarter of an agent worker's time under load.
    """
    if http_client is not None:
        return _new_client(http_client=http_client)
    key = (settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL, settings.OPENAI_TIMEOUT_SECONDS)
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = _new_client(
            http_client=openai.DefaultHttpxClient(verify=tls_context())
        )
    return client


def llm_client_warm() -> None:
    """Build the process's client and load what its first call would load lazily.

    Called before a task cluster forks its workers: each agent worker used
    to spend about 50 ms of CPU here on its first turn, after every recycle.
    The client holds no connection yet, so the workers share nothing open.
    """
    if llm_configured():
        llm_client().chat.completions  # noqa: B018 - openai imports its resources on first use


def _new_client(*, http_client: Any) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=settings.OPENAI_API_KEY,
        base_url=settings.OPENAI_BASE_URL or None,
        timeout=settings.OPENAI_TIMEOUT_SECONDS,
        max_retries=0,
        http_client=http_client,
    )


_RETRYABLE = (
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.RateLimitError,
    openai.InternalServerError,
    openai.ConflictError,
)


def _error_kind(exc: Exception) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return "auth"
    if isinstance(exc, openai.InternalServerError):
        return "server_error"
    if isinstance(exc, openai.APIStatusError):
        return f"http_{exc.status_code}"
    return "invalid_response"


def _retry_after(exc: Exception) -> float | None:
    # openai's errors carry its own HTTP client's response (not httpx's), with
    # the same `headers`.
    response = getattr(exc, "response", None)
    return retry_after_seconds(response) if response is not None else None


def _create(
    client: openai.OpenAI,
    *,
    deadline: float,
    sleep: Callable[[float], None],
    request: dict[str, Any],
    result: LlmResult,
) -> Any:
    """One completion, retried on timeouts, 429, connection errors and 5xx until the deadline."""
    attempt = 0
    while True:
        attempt += 1
        result.attempts += 1
        remaining = deadline - time.monotonic()
        if remaining <= 0.5:
            raise LlmError("timeout", "time budget for the model exhausted", attempts=attempt - 1)
        try:
            return client.chat.completions.create(
                **request, timeout=min(settings.OPENAI_TIMEOUT_SECONDS, remaining)
            )
        except _RETRYABLE as exc:
            kind = _error_kind(exc)
            if attempt >= settings.OPENAI_MAX_ATTEMPTS:
                raise LlmError(kind, str(exc), attempts=attempt) from exc
            backoff = settings.OPENAI_RETRY_BASE_SECONDS * 2 ** (attempt - 1)
            delay = min(_retry_after(exc) or backoff, settings.OPENAI_RETRY_MAX_SECONDS)
            if time.monotonic() + delay >= deadline:
                raise LlmError(kind, str(exc), attempts=attempt) from exc
            logger.warning("llm: %s on attempt %d, retrying in %.1fs", kind, attempt, delay)
            sleep(delay)
        except openai.OpenAIError as exc:
            raise LlmError(_error_kind(exc), str(exc), attempts=attempt) from exc


def _parse_arguments(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def llm_chat(
    *,
    messages: Sequence[dict[str, Any]],
    model: str,
    temperature: float,
    tool_handler: ToolHandler,
    client: openai.OpenAI | None = None,
    max_rounds: int = 3,
    budget_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> LlmResult:
    """Ask the model for the next reply, running the tools it calls.

    The model may call tools and then write; when it called tools without
    writing, it is asked again with the tools' results (at most `max_rounds`
    requests). Raises LlmError when no answer could be had.
    """
    budget = budget_seconds or (
        settings.OPENAI_TIMEOUT_SECONDS * settings.OPENAI_MAX_ATTEMPTS
        + settings.OPENAI_RETRY_MAX_SECONDS
    )
    deadline = time.monotonic() + budget
    client = client or llm_client()  # the process's shared one: never closed here
    result = LlmResult(text="", model=model)
    conversation = list(messages)
    try:
        for _ in range(max_rounds):
            result.rounds += 1
            completion = _create(
                client,
                deadline=deadline,
                sleep=sleep,
                result=result,
                request={
                    "model": model,
                    "messages": conversation,
                    "temperature": temperature,
                    "tools": tools(),
                },
            )
            usage = getattr(completion, "usage", None)
            if usage is not None:
                result.prompt_tokens += usage.prompt_tokens or 0
                result.completion_tokens += usage.completion_tokens or 0
            result.model = getattr(completion, "model", None) or model
            if not completion.choices:
                raise LlmError("invalid_response", "no choices in the completion")
            message = completion.choices[0].message
            text = (message.content or "").strip()
            calls = [
                ToolCall(
                    id=call.id,
                    name=call.function.name,
                    arguments=_parse_arguments(call.function.arguments),
                )
                for call in (message.tool_calls or [])
                if getattr(call, "type", "function") == "function"
            ]
            if not calls:
                result.text = text
                return result
            conversation.append(
                {
                    "role": "assistant",
                    "content": message.content,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {
                                "name": call.name,
                                "arguments": json.dumps(call.arguments, ensure_ascii=False),
                            },
                        }
                        for call in calls
                    ],
                }
            )
            for call in calls:
                result.tool_calls.append(call)
                if call.name in TOOL_NAMES:
                    output = tool_handler(call)
                else:
                    output = json.dumps({"error": f"ferramenta desconhecida: {call.name}"})
                conversation.append({"role": "tool", "tool_call_id": call.id, "content": output})
            if text:
                # The model wrote to the lead alongside its tool calls: that is the reply.
                result.text = text
                return result
        return result
    except LlmError:
        raise
    except openai.OpenAIError as exc:
        raise LlmError(_error_kind(exc), str(exc), attempts=result.attempts) from exc
    except (AttributeError, TypeError, ValueError) as exc:
        # A server that is only almost OpenAI-compatible: a reply we cannot read.
        raise LlmError("invalid_response", f"{type(exc).__name__}: {exc}") from exc


# --- Splitting replies into WhatsApp-sized messages ---------------------------------------------


def split_reply(
    text: str, *, max_chars: int | None = None, max_parts: int | None = None
) -> list[str]:
    """Paragraphs grouped into messages of at most `max_chars`; long ones cut at sentences.

    People on WhatsApp write several short messages, not one wall of text;
    small paragraphs stay together so a short answer is still one message.
    Past `max_parts`, the rest goes into the last message.
    """
    limit = max_chars or settings.AGENT_REPLY_MAX_CHARS
    most = max_parts or settings.AGENT_REPLY_MAX_PARTS
    pieces: list[str] = []
    for paragraph in (p.strip() for p in text.replace("\r\n", "\n").split("\n\n")):
        if not paragraph:
            continue
        pieces.extend(_cut(paragraph, limit))
    parts: list[str] = []
    for piece in pieces:
        if parts and len(parts[-1]) + 2 + len(piece) <= limit:
            parts[-1] = f"{parts[-1]}\n\n{piece}"
        else:
            parts.append(piece)
    if len(parts) > most:
        parts = [*parts[: most - 1], "\n\n".join(parts[most - 1 :])]
    return parts


def _cut(paragraph: str, limit: int) -> list[str]:
    if len(paragraph) <= limit:
        return [paragraph]
    sentences = re.split(r"(?<=[.!?…])\s+", paragraph)
    chunks: list[str] = []
    for sentence in sentences:
        while len(sentence) > limit:
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            chunks.append(sentence[:cut].rstrip())
            sentence = sentence[cut:].lstrip()
        if chunks and len(chunks[-1]) + 1 + len(sentence) <= limit:
            chunks[-1] = f"{chunks[-1]} {sentence}"
        elif sentence:
            chunks.append(sentence)
    return chunks
