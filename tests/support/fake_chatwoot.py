"""An in-process Chatwoot behind respx: its Application API's answers, with state and faults.

The shapes are Chatwoot's own jbuilder views (contacts search and create,
contact conversations, conversation create, messages, labels); the fake
keeps what was created so tests can read Chatwoot's side afterwards, and
can answer 5xx, time out, or hang before it does (`fault`).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

import httpx
import respx

from tests.support.local_server import JsonHandler

URL = "https://chatwoot.example.test"
ACCOUNT = 3
INBOX = 7
TOKEN = "chatwoot-api-token-for-tests"

# What a fault does to one request: an answer of its own, an exception, or None (go on).
Fault = Callable[[httpx.Request], httpx.Response | Exception | None]


def server_error(request: httpx.Request) -> httpx.Response:
    return httpx.Response(500, json={"error": "Internal Server Error"})


def timeout_after(seconds: float, *, applied: bool = False) -> Fault:
    """Hang `seconds`, then time out; `applied`: Chatwoot did the write, the answer got lost."""

    def fault(request: httpx.Request) -> Exception | None:
        time.sleep(seconds)
        if applied:
            return None  # FakeChatwoot applies it, then raises (see _handle)
        return httpx.ReadTimeout("timed out", request=request)

    fault.applied = applied  # type: ignore[attr-defined]
    return fault


@dataclass
class FakeChatwoot:
    # Mocked at the transport (respx) for in-process tests; None behind a real server.
    router: respx.MockRouter | None
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    conversations: dict[int, dict[str, Any]] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    fault: Fault | None = None
    # Chatwoot before content_attributes and source_id were kept on API messages.
    drop_marker: bool = False
    _ids: itertools.count = field(default_factory=lambda: itertools.count(101))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.router is None:
            return
        self.router.route(url__startswith=URL).mock(side_effect=self._handle)
        # The local fake provider and fake OpenAI are real servers: let them through.
        self.router.route(host="127.0.0.1").pass_through()

    # --- what tests read -----------------------------------------------------------------------

    def posted(self, conversation_id: int | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages
            if conversation_id is None or m["conversation_id"] == conversation_id
        ]

    def answer_lost(self, method: str, path_pattern: str, *, times: int = 1) -> Fault:
        """A fault: Chatwoot applies the matching request, then the answer times out."""
        pattern = re.compile(path_pattern)
        left = [times]

        def fault(request: httpx.Request) -> Exception | None:
            if left[0] and request.method == method and pattern.search(request.url.path):
                left[0] -= 1
                self._route(request)
                return httpx.ReadTimeout("answer lost", request=request)
            return None

        return fault

    def refuse(self, method: str, path_pattern: str, status: int, *, times: int = 1) -> Fault:
        """A fault: the matching request is answered `status`, `times` times."""
        pattern = re.compile(path_pattern)
        left = [times]

        def fault(request: httpx.Request) -> httpx.Response | None:
            if left[0] and request.method == method and pattern.search(request.url.path):
                left[0] -= 1
                return httpx.Response(status, json={"message": "refused by the test"})
            return None

        return fault

    def calls(self, method: str, path_pattern: str) -> int:
        pattern = re.compile(path_pattern)
        return sum(1 for r in self.requests if r.method == method and pattern.search(r.url.path))

    # --- the API -------------------------------------------------------------------------------

    def _handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        if request.headers.get("api_access_token") != TOKEN:
            return httpx.Response(401, json={"error": "Invalid Access Token"})
        fault = self.fault
        if fault is not None:
            outcome = fault(request)
            if isinstance(outcome, Exception):
                raise outcome
            if isinstance(outcome, httpx.Response):
                return outcome
            if getattr(fault, "applied", False):
                self._route(request)
                raise httpx.ReadTimeout("timed out after the write", request=request)
        return self._route(request)

    def _route(self, request: httpx.Request) -> httpx.Response:
        prefix = f"/api/v1/accounts/{ACCOUNT}"
        path = request.url.path
        if not path.startswith(prefix):
            return httpx.Response(404, json={"error": "Resource could not be found"})
        path = path[len(prefix) :]
        body = json.loads(request.content) if request.content else {}
        with self._lock:
            for method, pattern, handler in self._routes():
                match = re.fullmatch(pattern, path)
                if match and request.method == method:
                    return handler(request, body, *match.groups())
        return httpx.Response(404, json={"error": "Resource could not be found"})

    def _routes(self) -> list[tuple[str, str, Callable[..., httpx.Response]]]:
        return [
            ("GET", r"/contacts/search", self._contacts_search),
            ("POST", r"/contacts", self._contact_create),
            ("POST", r"/contacts/(\d+)/contact_inboxes", self._contact_inbox_create),
            ("GET", r"/contacts/(\d+)/conversations", self._contact_conversations),
            ("POST", r"/conversations", self._conversation_create),
            ("POST", r"/conversations/(\d+)/messages", self._message_create),
            ("GET", r"/conversations/(\d+)/messages", self._messages_list),
            ("GET", r"/conversations/(\d+)/labels", self._labels_get),
            ("POST", r"/conversations/(\d+)/labels", self._labels_set),
        ]

    def _contacts_search(self, request: httpx.Request, body: dict) -> httpx.Response:
        q = request.url.params.get("q", "")
        found = [
            c
            for c in self.contacts.values()
            if q and q in (c["phone_number"] or "", c["identifier"] or "", c["name"])
        ]
        return httpx.Response(
            200, json={"meta": {"count": len(found), "current_page": 1}, "payload": found}
        )

    def _contact_create(self, request: httpx.Request, body: dict) -> httpx.Response:
        if any(c["phone_number"] == body.get("phone_number") for c in self.contacts.values()):
            return httpx.Response(422, json={"message": "Phone number has already been taken"})
        contact_id = next(self._ids)
        source_id = str(uuid.uuid4())
        contact_inbox = {
            "source_id": source_id,
            "inbox": {"id": body["inbox_id"], "channel_type": "Channel::Api"},
        }
        contact = {
            "id": contact_id,
            "name": body.get("name"),
            "phone_number": body.get("phone_number"),
            "identifier": body.get("identifier"),
            "email": None,
            "additional_attributes": {},
            "custom_attributes": {},
            "thumbnail": "",
            "contact_inboxes": [contact_inbox],
        }
        self.contacts[contact_id] = contact
        return httpx.Response(
            200, json={"payload": {"contact": contact, "contact_inbox": contact_inbox}}
        )

    def _contact_inbox_create(self, request, body, contact_id) -> httpx.Response:
        contact_inbox = {"source_id": str(uuid.uuid4()), "inbox": {"id": body["inbox_id"]}}
        self.contacts[int(contact_id)]["contact_inboxes"].append(contact_inbox)
        return httpx.Response(200, json=contact_inbox)

    def _contact_conversations(self, request, body, contact_id) -> httpx.Response:
        mine = [
            c for c in self.conversations.values() if c["meta"]["sender"]["id"] == int(contact_id)
        ]
        return httpx.Response(200, json={"payload": mine})

    def _conversation_create(self, request: httpx.Request, body: dict) -> httpx.Response:
        contact = self.contacts.get(int(body.get("contact_id") or 0))
        if contact is None or not body.get("source_id"):
            return httpx.Response(422, json={"message": "Source can't be blank"})
        conversation_id = next(self._ids)
        conversation = {
            "id": conversation_id,
            "inbox_id": body["inbox_id"],
            "status": "open",
            "labels": [],
            "meta": {"sender": {"id": contact["id"], "phone_number": contact["phone_number"]}},
            "messages": [],
            "account_id": ACCOUNT,
        }
        self.conversations[conversation_id] = conversation
        return httpx.Response(200, json=conversation)

    def _message_create(self, request, body, conversation_id) -> httpx.Response:
        if int(conversation_id) not in self.conversations:
            return httpx.Response(404, json={"error": "Resource could not be found"})
        message = {
            "id": next(self._ids),
            "content": body.get("content"),
            "conversation_id": int(conversation_id),
            "inbox_id": INBOX,
            "message_type": {"incoming": 0, "outgoing": 1}[body.get("message_type", "outgoing")],
            "private": bool(body.get("private")),
            "content_attributes": {} if self.drop_marker else body.get("content_attributes") or {},
            "source_id": None if self.drop_marker else body.get("source_id"),
            "sender_type": body.get("sender_type"),
            "created_at": int(time.time()),
        }
        self.messages.append(message)
        return httpx.Response(200, json=message)

    def _messages_list(self, request, body, conversation_id) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "meta": {"labels": self.conversations[int(conversation_id)]["labels"]},
                "payload": self.posted(int(conversation_id)),
            },
        )

    def _labels_get(self, request, body, conversation_id) -> httpx.Response:
        return httpx.Response(
            200, json={"payload": self.conversations[int(conversation_id)]["labels"]}
        )

    def _labels_set(self, request, body, conversation_id) -> httpx.Response:
        # Chatwoot replaces the whole list with the one it is given.
        self.conversations[int(conversation_id)]["labels"] = list(body.get("labels") or [])
        return httpx.Response(
            200, json={"payload": self.conversations[int(conversation_id)]["labels"]}
        )


def chatwoot_settings(settings: Any) -> None:
    settings.CHATWOOT_URL = URL
    settings.CHATWOOT_API_TOKEN = TOKEN
    settings.CHATWOOT_ACCOUNT_ID = str(ACCOUNT)
    settings.CHATWOOT_INBOX_ID = str(INBOX)
    settings.CHATWOOT_TIMEOUT_SECONDS = 1.0
    settings.CHATWOOT_RETRY_BASE_SECONDS = 10
    settings.CHATWOOT_RETRY_MAX_SECONDS = 600


@contextmanager
def running_fake_chatwoot() -> Iterator[tuple[FakeChatwoot, str]]:
    """The same fake behind a real HTTP server on 127.0.0.1, for other processes (a qcluster).

    Yields the fake and its base URL (CHATWOOT_URL). A fault that raises a
    timeout closes the connection without an answer.
    """
    fake = FakeChatwoot(router=None)

    class Handler(JsonHandler):
        def _answer(self) -> None:
            body = self.read_body()
            request = httpx.Request(
                self.command, f"{URL}{self.path}", headers=dict(self.headers), content=body
            )
            try:
                response = fake._handle(request)
            except httpx.HTTPError:
                self.close_connection = True
                return
            self.write_json(response.status_code, response.json(), {})

        do_GET = do_POST = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield fake, f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
