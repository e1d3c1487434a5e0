"""A fake WhatsApp provider: a real HTTP server on 127.0.0.1 that a test scripts.

It answers whatever the test queued (200, 400, 401, 429 with Retry-After,
500, or hangs) and records every request with the wall-clock time it arrived
and the time its answer was written, so tests can check what the provider
really saw: how many requests, per chip, how far apart.

Its success body carries the message id under every provider's field name
(Evolution `key.id`, Meta `messages[0].id`, Z-API/W-API `messageId`, sandbox
`id`), so one server stands in for any adapter pointed at it through
`chip.api_base_url`.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.local_server import JsonHandler, ScriptedServer


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None  # None on a 2xx: the default success body with a fresh id
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0  # seconds to wait before answering (a stuck provider)


OK = Reply(200)
BAD_REQUEST = Reply(400, {"status": 400, "error": "Bad Request", "response": {"message": "x"}})
UNAUTHORIZED = Reply(401, {"status": 401, "error": "Unauthorized"})
SERVER_ERROR = Reply(500, {"status": 500, "error": "Internal Server Error"})


def rate_limited(retry_after: int) -> Reply:
    return Reply(429, {"error": "rate-overlimit"}, headers={"Retry-After": str(retry_after)})


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    started: float
    finished: float = 0.0  # when the answer started going out
    status: int = 0
    message_id: str = ""

    @property
    def chip_key(self) -> str:
        """The last path segment: the instance name in Evolution's URL."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]


class FakeProvider(ScriptedServer[Reply]):
    def __init__(self) -> None:
        super().__init__(default=OK)
        # path fragment -> (its own queued replies, its own default)
        self._routes: dict[str, tuple[deque[Reply], Reply | None]] = {}

    def route(self, path_contains: str, *replies: Reply, then: Reply | None = None) -> None:
        """Script the requests whose path contains `path_contains` (one chip) apart."""
        with self._lock:
            self._routes[path_contains] = (deque(replies), then)

    def _next_for(self, path: str) -> Reply:
        with self._lock:
            for fragment, (queued, default) in self._routes.items():
                if fragment in path:
                    if queued:
                        return queued.popleft()
                    if default is not None:
                        return default
        return self._next()

    def always(self, reply: Reply) -> None:
        with self._lock:
            self._script.clear()
            self._default = reply

    def seen(self, path_contains: str = "") -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if path_contains in r.path]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                started = time.time()
                raw = self.read_body()
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                parts = urlsplit(self.path)
                seen = Seen(
                    method="POST",
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers=dict(self.headers.items()),
                    body=body,
                    started=started,
                )
                provider._record(seen)
                reply = provider._next_for(parts.path)
                if reply.hang:
                    provider._release.wait(reply.hang)
                payload = reply.body
                if payload is None and 200 <= reply.status < 300:
                    message_id = f"FAKE{next(provider._ids):06d}"
                    seen.message_id = message_id
                    payload = {
                        "key": {"id": message_id, "fromMe": True},
                        "status": "PENDING",
                        "messages": [{"id": message_id}],
                        "messageId": message_id,
                        "zaapId": f"Z{message_id}",
                        "id": message_id,
                    }
                # Before writing: the client cannot have the answer any earlier.
                seen.status = reply.status
                seen.finished = time.time()
                self.write_json(reply.status, payload, reply.headers)

        return Handler


@contextmanager
def running_fake_provider() -> Iterator[FakeProvider]:
    provider = FakeProvider().start()
    try:
        yield provider
    finally:
        provider.stop()
