"""A fake OpenAI-compatible server: a real HTTP server on 127.0.0.1 that a test scripts.

It answers `POST /v1/chat/completions` with what the test queued (a text
reply, tool calls, a 429 with Retry-After, a 500, or a hang longer than the
client's timeout) in the shape the real API uses, and records each request
body so tests can read the history, tools and model the agent sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.local_server import JsonHandler, ScriptedServer


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0  # seconds to wait before answering


def completion(
    text: str | None = None,
    *,
    tool_calls: list[tuple[str, dict[str, Any]]] | None = None,
    prompt_tokens: int = 120,
    completion_tokens: int = 30,
    model: str = "gpt-4o-mini-2024-07-18",
) -> Answer:
    """A 200 with a chat.completion object, as api.openai.com sends it."""
    calls = [
        {
            "id": f"call_{index}_{name}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
        }
        for index, (name, arguments) in enumerate(tool_calls or [])
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return Answer(
        200,
        {
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if calls else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": "fp_fake",
        },
    )


def rate_limited(retry_after: float = 0.0) -> Answer:
    return Answer(
        429,
        {
            "error": {
                "message": "Rate limit reached for gpt-4o-mini on requests per min (RPM).",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        },
        headers={"retry-after": str(retry_after)},
    )


def server_error() -> Answer:
    return Answer(500, {"error": {"message": "The server had an error", "type": "server_error"}})


def hang(seconds: float) -> Answer:
    """Answer only after `seconds`: longer than the client's timeout, it is a timeout."""
    return Answer(hang=seconds, body=completion("tarde demais").body)


@dataclass
class Request:
    path: str
    headers: dict[str, str]  # names lowercased
    body: dict[str, Any]
    at: float


class FakeOpenAI(ScriptedServer[Answer]):
    url_suffix = "/v1"

    def __init__(self) -> None:
        super().__init__(default=completion("Oi! Como posso ajudar?"))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                raw = self.read_body()
                fake._record(
                    Request(
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=json.loads(raw or b"{}"),
                        at=time.time(),
                    )
                )
                if self.path.rstrip("/") != "/v1/chat/completions":
                    answer = Answer(404, {"error": {"message": "Not found", "type": "invalid"}})
                else:
                    answer = fake._next()
                if answer.hang:
                    fake._release.wait(answer.hang)
                headers = {"x-request-id": f"req_{next(fake._ids)}", **answer.headers}
                self.write_json(answer.status, answer.body, headers)

        return Handler


@contextmanager
def running_fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    try:
        yield server
    finally:
        server.stop()
