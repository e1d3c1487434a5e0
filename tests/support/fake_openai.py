"""A fake OpenAI-compatible server: a real HTTP server on 127.0.0.1 that a test scripts.

It answers `POST /v1/chat/completions` with what the test queued (a text
reply, tool calls, a 429 with Retry-After, a 500, or a hang longer than the
client's timeout) in the shape the real API uses, and records each request
body so tests can read the history, tools and model the agent sent.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._script: deque[Answer] = deque()
        self._default: Answer = completion("Oi! Como posso ajudar?")
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, *answers: Answer, then: Answer | None = None) -> None:
        with self._lock:
            self._script.extend(answers)
            if then is not None:
                self._default = then

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _next(self) -> Answer:
        with self._lock:
            return self._script.popleft() if self._script else self._default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                with fake._lock:
                    fake.requests.append(
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
                data = json.dumps(answer.body if answer.body is not None else {}).encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("x-request-id", f"req_{next(fake._ids)}")
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client timed out and went away

        return Handler

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def running_fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    try:
        yield server
    finally:
        server.stop()
