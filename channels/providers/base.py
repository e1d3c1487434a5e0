"""The one interface every provider adapter implements.

An adapter knows a provider's wire formats and nothing about our database
beyond the `Chip` it is handed: it verifies a webhook request, turns a
payload into normalized events (pure, no I/O) and sends a message, returning
a classified result. Only the outbox service decides retries and backoff.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from django.utils.translation import gettext

if TYPE_CHECKING:
    import httpx

    from channels.models import Chip


# --- Inbound: normalized events -------------------------------------------------------


@dataclass(frozen=True)
class InboundMessage:
    """A message someone wrote on WhatsApp (a lead, or the business from its phone)."""

    provider_message_id: str
    # The sender's address as the provider gave it (`5511…`, `…@s.whatsapp.net`, `…@lid`).
    sender_id: str
    # E.164 when the payload carries a real phone number; None for @lid-only senders.
    phone: str | None
    kind: str  # conversations.Message.Kind value
    text: str = ""
    sender_name: str = ""
    media_id: str = ""
    media_url: str = ""
    media_mime_type: str = ""
    from_me: bool = False
    timestamp: datetime | None = None
    # Other addresses the provider gave for the same person (e.g. the @lid beside the phone).
    alt_sender_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class StatusUpdate:
    """The provider's news about a message we sent."""

    provider_message_id: str
    status: str  # sent | delivered | read | failed
    timestamp: datetime | None = None
    error_code: str = ""
    error: str = ""


@dataclass(frozen=True)
class ConnectionUpdate:
    """The number's connection or health changed (connected, QR code, quality, ban)."""

    status: str | None  # channels.Chip.Status value, or None when only health changed
    qr_code: str = ""
    quality_rating: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ignored:
    """Something we deliberately do not handle (group message, reaction, unknown event)."""

    reason: str
    event_type: str = ""


InboundEvent = InboundMessage | StatusUpdate | ConnectionUpdate | Ignored


class PayloadError(ValueError):
    """The payload is not what the provider sends: the webhook answers 400."""


# --- Outbound: classified send results ---------------------------------------------------


class ErrorKind(StrEnum):
    TRANSIENT = "transient"  # timeout, connection error, 5xx: retry with backoff
    RATE_LIMITED = "rate_limited"  # 429 or a provider rate-limit code: retry after a wait
    AUTH = "auth"  # 401/403: credentials are wrong; retrying will not help
    INVALID_RECIPIENT = "invalid_recipient"  # not a WhatsApp number, undeliverable
    RESTRICTED = "restricted"  # the provider blocked/restricted our number: quarantine
    PERMANENT = "permanent"  # bad request and anything else that will not get better


# Provider error text kept on messages, attempts and chips (and shown in the
# admin) is at most this long: enough to diagnose, too short to read internal
# pages through a misconfigured URL.
ERROR_MAX_CHARS = 300


def printable_excerpt(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, control characters escaped, on one line."""
    cut = text[:limit]
    cleaned = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in cut
    )
    return cleaned + ("…" if len(text) > limit else "")


@dataclass(frozen=True)
class SendResult:
    ok: bool
    provider_message_id: str = ""
    error_kind: ErrorKind | None = None
    error_code: str = ""  # the provider's own code, e.g. Meta's 131048
    error: str = ""
    http_status: int | None = None
    retry_after: float | None = None  # seconds, from Retry-After or the provider's hint

    @classmethod
    def sent(cls, provider_message_id: str, *, http_status: int | None = 200) -> SendResult:
        return cls(ok=True, provider_message_id=provider_message_id, http_status=http_status)

    @classmethod
    def failed(
        cls,
        kind: ErrorKind,
        error: str,
        *,
        error_code: str = "",
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> SendResult:
        return cls(
            ok=False,
            error_kind=kind,
            error=printable_excerpt(error, ERROR_MAX_CHARS),
            error_code=error_code,
            http_status=http_status,
            retry_after=retry_after,
        )


@dataclass(frozen=True)
class OutboundMedia:
    """Media the agent sends, by public URL (the provider downloads it)."""

    kind: str  # conversations.Message.Kind value: image, audio, video, document, sticker
    url: str
    caption: str = ""
    mime_type: str = ""
    filename: str = ""


# --- The adapter interface -----------------------------------------------------------------


class ProviderAdapter(ABC):
    name: ClassVar[str]
    # Headers that carry the provider's webhook credential, to tell a missing
    # credential (401) from a wrong one (403).
    credential_headers: ClassVar[tuple[str, ...]] = ()
    # True when the provider signs every request (Meta); the others carry a
    # credential only when the chip is configured with one.
    always_signed: ClassVar[bool] = False
    # The body field naming the provider's instance (unsigned providers), so a
    # delivery meant for another instance is refused at this chip's URL.
    instance_field: ClassVar[str] = ""
    # The event names this provider documents (matched ignoring case); any other event
    # type is counted as "other" so a sender cannot create metric series.
    known_events: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def verify(self, chip: Chip, headers: Mapping[str, str], body: bytes) -> bool:
        """True when the request really comes from the provider for this chip.

        The URL's secret `chip.webhook_key` has already matched; this checks the
        provider's own signature or token where it has one, on the raw bytes:
        it never parses the body (authentication comes before parsing).
        Constant-time compares; never raises on odd header values.
        """

    def names_other_instance(self, chip: Chip, payload: Any) -> bool:
        """True when the parsed body names an instance that is not this chip's."""
        if not self.instance_field or not chip.instance_id or not isinstance(payload, Mapping):
            return False
        instance = payload.get(self.instance_field)
        if instance is None or instance == "":
            return False
        return str(instance) != chip.instance_id

    def metric_event(self, event_type: str) -> str:
        """`event_type` as a metric label: a documented event name, or "other"."""
        if not event_type:
            return ""
        return _by_lowercase(self.known_events).get(event_type.lower(), "other")

    @abstractmethod
    def parse_inbound(self, payload: Any, headers: Mapping[str, str]) -> list[InboundEvent]:
        """Normalize one webhook body. Pure: no database, no network.

        Raises PayloadError when the body lacks what its event needs.
        """

    def event_type(self, payload: Any) -> str:
        """The provider's own name for the event, for filtering in the admin.

        Total: any JSON value gives a string, never an exception.
        """
        return ""

    def dedupe_key(self, payload: Any, headers: Mapping[str, str]) -> str:
        """A key equal across retries of the same delivery; empty if none. Total too."""
        return ""

    def send_text(self, chip: Chip, *, to: str, text: str, client: httpx.Client) -> SendResult:
        """Send a text message to `to` (an address the provider accepts)."""
        raise NotImplementedError(f"{self.name}: sending is not implemented")

    def send_typing(
        self, chip: Chip, *, to: str, message_id: str, client: httpx.Client
    ) -> bool | None:
        """Show the lead "digitando…" (marking `message_id` read where the provider ties
        the two); True if accepted, False if not, None when the provider offers no such call.
        """
        return None

    def send_media(
        self, chip: Chip, *, to: str, media: OutboundMedia, client: httpx.Client
    ) -> SendResult:
        """Send an image, audio, video or document by URL; permanent failure if unsupported."""
        return SendResult.failed(
            ErrorKind.PERMANENT,
            gettext("%(provider)s: sending %(kind)s is not supported")
            % {"provider": self.name, "kind": media.kind},
        )


@cache
def _by_lowercase(names: frozenset[str]) -> dict[str, str]:
    return {name.lower(): name for name in names}


_REGISTRY: dict[str, ProviderAdapter] = {}


def register(adapter_class: type[ProviderAdapter]) -> type[ProviderAdapter]:
    """Class decorator: make an adapter available under its `name`."""
    _REGISTRY[adapter_class.name] = adapter_class()
    return adapter_class


def adapters_load() -> None:
    """Import the adapters' modules, which runs their @register decorators."""
    if not _REGISTRY:
        from channels.providers import evolution, meta, sandbox, wapi, zapi  # noqa: F401


def get_adapter(provider: str) -> ProviderAdapter:
    """The adapter for a provider name; KeyError for an unknown one."""
    adapters_load()
    return _REGISTRY[provider]
