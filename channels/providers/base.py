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
from typing import TYPE_CHECKING, Any, ClassVar

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
            error=error,
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

    @abstractmethod
    def verify(self, chip: Chip, headers: Mapping[str, str], body: bytes) -> bool:
        """True when the request really comes from the provider for this chip.

        The URL's secret `chip.webhook_key` has already matched; this checks the
        provider's own signature or token where it has one. Constant-time compares.
        """

    @abstractmethod
    def parse_inbound(self, payload: Any, headers: Mapping[str, str]) -> list[InboundEvent]:
        """Normalize one webhook body. Pure: no database, no network.

        Raises PayloadError when the body lacks what its event needs.
        """

    def event_type(self, payload: Any) -> str:
        """The provider's own name for the event, for filtering in the admin."""
        return ""

    def dedupe_key(self, payload: Any, headers: Mapping[str, str]) -> str:
        """A key equal across retries of the same delivery; empty if none."""
        return ""

    def send_text(self, chip: Chip, *, to: str, text: str, client: httpx.Client) -> SendResult:
        """Send a text message to `to` (an address the provider accepts)."""
        raise NotImplementedError(f"{self.name}: sending is not implemented")

    def send_media(
        self, chip: Chip, *, to: str, media: OutboundMedia, client: httpx.Client
    ) -> SendResult:
        """Send an image, audio, video or document by URL; permanent failure if unsupported."""
        return SendResult.failed(
            ErrorKind.PERMANENT, f"{self.name}: envio de {media.kind} não suportado"
        )


_REGISTRY: dict[str, ProviderAdapter] = {}


def register(adapter_class: type[ProviderAdapter]) -> type[ProviderAdapter]:
    """Class decorator: make an adapter available under its `name`."""
    _REGISTRY[adapter_class.name] = adapter_class()
    return adapter_class


def get_adapter(provider: str) -> ProviderAdapter:
    """The adapter for a provider name; KeyError for an unknown one."""
    if not _REGISTRY:
        # Importing the modules runs their @register decorators.
        from channels.providers import evolution, meta, sandbox, wapi, zapi  # noqa: F401
    return _REGISTRY[provider]
