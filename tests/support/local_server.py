"""The shared part of the fake servers tests script: a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar

ReplyT = TypeVar("ReplyT")


class ScriptedServer(Generic[ReplyT]):
    """Answers requests with the replies a test queued, then with a default.

    Subclasses give the request handler (`_handler_class`) and what a request
    records; `requests` keeps them in arrival order. `_release` ends any reply
    that hangs when the server stops.
    """

    url_suffix = ""

    def __init__(self, default: ReplyT) -> None:
        self.requests: list[Any] = []
        self._script: deque[ReplyT] = deque()
        self._default = default
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.url_suffix}"

    def script(self, *replies: ReplyT, then: ReplyT | None = None) -> None:
        """Answer the next requests with `replies` in order, then with `then` forever."""
        with self._lock:
            self._script.extend(replies)
            if then is not None:
                self._default = then

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _record(self, request: Any) -> None:
        with self._lock:
            self.requests.append(request)

    def _next(self) -> ReplyT:
        with self._lock:
            return self._script.popleft() if self._script else self._default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        return self

    def release(self) -> None:
        """End every reply that hangs, now (a test done with a hanging dependency)."""
        self._release.set()

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the second waits
    # for a delayed ACK (~40 ms) and every request looks slow.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def write_json(self, status: int, payload: Any, headers: Mapping[str, str]) -> None:
        data = json.dumps(payload if payload is not None else {}).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            pass  # the client gave up (timeout); the request still counts as seen
