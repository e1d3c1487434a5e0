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
from urllib.parse import parse_qs, urlsplit


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


class FakeProvider:
    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self._script: deque[Reply] = deque()
        self._default = OK
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, *replies: Reply, then: Reply | None = None) -> None:
        """Answer the next requests with `replies` in order, then with `then` forever."""
        with self._lock:
            self._script.extend(replies)
            if then is not None:
                self._default = then

    def always(self, reply: Reply) -> None:
        with self._lock:
            self._script.clear()
            self._default = reply

    def seen(self, path_contains: str = "") -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if path_contains in r.path]

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._script.popleft() if self._script else self._default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the second
            # waits for a delayed ACK (~40 ms) and every request looks slow.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                started = time.time()
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
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
                with provider._lock:
                    provider.requests.append(seen)
                reply = provider._next_reply()
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
                data = json.dumps(payload if payload is not None else {}).encode()
                # Before writing: the client cannot have the answer any earlier.
                seen.status = reply.status
                seen.finished = time.time()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                except OSError:
                    pass  # the client gave up (timeout); the request still counts as seen

        return Handler

    def start(self) -> FakeProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def running_fake_provider() -> Iterator[FakeProvider]:
    provider = FakeProvider().start()
    try:
        yield provider
    finally:
        provider.stop()
