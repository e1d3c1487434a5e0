"""Chatwoot's Application API, the few calls the mirror needs, over httpx.

Authenticated with a user's (or an agent bot's) access token in the
`api_access_token` header. The shapes are Chatwoot's own (its
`app/views/api/v1/accounts/...` jbuilder views and swagger):

- `GET  /api/v1/accounts/{a}/contacts/search?q=` -> `{"payload": [contact, ...]}`
- `POST /api/v1/accounts/{a}/contacts` (inbox_id, name, phone_number, identifier)
  -> `{"payload": {"contact": {...}, "contact_inbox": {"source_id": ...}}}`
- `POST /api/v1/accounts/{a}/contacts/{id}/contact_inboxes` (inbox_id) -> contact inbox
- `GET  /api/v1/accounts/{a}/contacts/{id}/conversations` -> `{"payload": [conversation, ...]}`
- `POST /api/v1/accounts/{a}/conversations` (source_id, inbox_id, contact_id) -> conversation
- `POST /api/v1/accounts/{a}/conversations/{id}/messages` (content, message_type,
  private, content_attributes, source_id) -> message
- `GET  /api/v1/accounts/{a}/conversations/{id}/messages` -> `{"payload": [message, ...]}`
- `GET|POST /api/v1/accounts/{a}/conversations/{id}/labels` -> `{"payload": [label, ...]}`;
  the POST *replaces* the conversation's labels with the list it is given.

Every failure is a `ChatwootError` that says whether a retry may help and
whether the request may have been applied anyway (a timeout after the
request left, a 5xx): the mirror looks before it posts such a message again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

from core.metrics import counter_inc

logger = logging.getLogger(__name__)


@dataclass
class ChatwootError(Exception):
    operation: str
    detail: str
    status: int | None = None
    retryable: bool = True
    # The request may have reached Chatwoot and been applied.
    ambiguous: bool = False

    def __str__(self) -> str:
        status = f"HTTP {self.status}: " if self.status else ""
        return f"{self.operation}: {status}{self.detail}"[:300]


def chatwoot_configured() -> bool:
    return bool(
        settings.CHATWOOT_URL
        and settings.CHATWOOT_API_TOKEN
        and settings.CHATWOOT_ACCOUNT_ID
        and settings.CHATWOOT_INBOX_ID
    )


class ChatwootClient:
    """One account and inbox of one Chatwoot, from the CHATWOOT_* settings."""

    def __init__(self) -> None:
        self.account = str(settings.CHATWOOT_ACCOUNT_ID)
        self.inbox = str(settings.CHATWOOT_INBOX_ID)
        self._http = httpx.Client(
            base_url=f"{settings.CHATWOOT_URL.rstrip('/')}/api/v1/accounts/{self.account}",
            headers={"api_access_token": settings.CHATWOOT_API_TOKEN},
            timeout=httpx.Timeout(settings.CHATWOOT_TIMEOUT_SECONDS),
            # The URL is ours (settings), never a redirect's.
            follow_redirects=False,
            trust_env=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChatwootClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- contacts --------------------------------------------------------------------------

    def contacts_search(self, query: str) -> list[dict[str, Any]]:
        body = self._call("contacts_search", "GET", "/contacts/search", params={"q": query})
        return _list(body.get("payload"))

    def contact_create(self, *, name: str, phone: str, identifier: str) -> dict[str, Any]:
        data: dict[str, Any] = {"inbox_id": _int(self.inbox), "name": name}
        if phone:
            data["phone_number"] = phone
        if identifier:
            data["identifier"] = identifier
        body = self._call("contact_create", "POST", "/contacts", json=data)
        payload = _dict(body.get("payload"))
        # Recent Chatwoot nests the contact; older versions answer the contact itself.
        return payload if "contact" in payload else {"contact": payload or body}

    def contact_inbox_create(self, *, contact_id: int | str) -> dict[str, Any]:
        return self._call(
            "contact_inbox_create",
            "POST",
            f"/contacts/{contact_id}/contact_inboxes",
            json={"inbox_id": _int(self.inbox)},
        )

    def contact_conversations(self, *, contact_id: int | str) -> list[dict[str, Any]]:
        body = self._call("contact_conversations", "GET", f"/contacts/{contact_id}/conversations")
        return _list(body.get("payload"))

    # --- conversations -----------------------------------------------------------------------

    def conversation_create(self, *, source_id: str, contact_id: int | str) -> dict[str, Any]:
        return self._call(
            "conversation_create",
            "POST",
            "/conversations",
            json={"source_id": source_id, "inbox_id": _int(self.inbox), "contact_id": contact_id},
        )

    def message_create(
        self,
        *,
        conversation_id: str,
        content: str,
        message_type: str,
        content_attributes: dict[str, Any],
        source_id: str = "",
        agent_bot_id: str = "",
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "content": content,
            "message_type": message_type,
            "private": False,
            "content_attributes": content_attributes,
        }
        if source_id:
            data["source_id"] = source_id
        if agent_bot_id:
            # Chatwoot's MessageBuilder: an outgoing message sent as the account's agent bot.
            data["sender_type"] = "AgentBot"
            data["sender_id"] = _int(agent_bot_id)
        return self._call(
            "message_create", "POST", f"/conversations/{conversation_id}/messages", json=data
        )

    def messages_list(self, *, conversation_id: str) -> list[dict[str, Any]]:
        body = self._call("messages_list", "GET", f"/conversations/{conversation_id}/messages")
        return _list(body.get("payload"))

    def labels_get(self, *, conversation_id: str) -> list[str]:
        body = self._call("labels_get", "GET", f"/conversations/{conversation_id}/labels")
        return [label for label in _list(body.get("payload")) if isinstance(label, str)]

    def labels_set(self, *, conversation_id: str, labels: list[str]) -> list[str]:
        body = self._call(
            "labels_set",
            "POST",
            f"/conversations/{conversation_id}/labels",
            json={"labels": labels},
        )
        return [label for label in _list(body.get("payload")) if isinstance(label, str)]

    # --- transport ---------------------------------------------------------------------------

    def _call(self, operation: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached Chatwoot.
            raise self._failed(operation, type(exc).__name__, outcome="unreachable") from exc
        except httpx.HTTPError as exc:
            # The request may have been read and applied before the answer was lost.
            raise self._failed(
                operation, type(exc).__name__, outcome="timeout", ambiguous=method != "GET"
            ) from exc
        status = response.status_code
        if status >= 400:
            # A wrong token, account or inbox (401, 403, 404) is fixed in the settings,
            # and the writes wait for it; other 4xx refuse this one request for good.
            retryable = status >= 500 or status in (401, 403, 404, 408, 429)
            raise self._failed(
                operation,
                _error_text(response),
                status=status,
                outcome=f"http_{status // 100}xx",
                retryable=retryable,
                ambiguous=method != "GET" and (status >= 500 or status == 408),
            )
        counter_inc(
            "integration_requests_total",
            {"integration": "chatwoot", "operation": operation, "outcome": "ok"},
        )
        try:
            body = response.json()
        except ValueError:
            body = {}
        return body if isinstance(body, dict) else {"payload": body}

    def _failed(
        self,
        operation: str,
        detail: str,
        *,
        outcome: str,
        status: int | None = None,
        retryable: bool = True,
        ambiguous: bool = False,
    ) -> ChatwootError:
        counter_inc(
            "integration_requests_total",
            {"integration": "chatwoot", "operation": operation, "outcome": outcome},
        )
        error = ChatwootError(
            operation, detail, status=status, retryable=retryable, ambiguous=ambiguous
        )
        logger.warning("chatwoot: %s", error)
        return error


def _error_text(response: httpx.Response) -> str:
    # Chatwoot answers {"error": "..."} or {"message": "..."}; keep it short and printable.
    try:
        body = response.json()
    except ValueError:
        body = None
    text = ""
    if isinstance(body, dict):
        text = str(body.get("error") or body.get("message") or "")
    text = text or response.reason_phrase or ""
    return "".join(ch for ch in text if ch.isprintable())[:200]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: str) -> int | str:
    return int(value) if str(value).isdigit() else value
