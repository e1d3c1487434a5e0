"""Small helpers the provider adapters share (pure: no database, no network)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from channels.providers.base import PayloadError
from core.phones import to_e164

# Epoch values above this are milliseconds (Z-API's `momment`), below are seconds.
_MS_THRESHOLD = 10**11


def header(headers: Mapping[str, str], name: str) -> str:
    """Case-insensitive header lookup; intake's and the stored headers are lower-case dicts."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = headers.get(lowered)
        if value is None:
            for key, candidate in headers.items():
                if key.lower() == lowered:
                    value = candidate
                    break
    return value or ""


def same_secret(given: str, expected: str) -> bool:
    """Constant-time compare; an unset expected secret never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def epoch_to_datetime(value: Any) -> datetime | None:
    """Seconds or milliseconds since the epoch (int, str or Baileys' {low, high})."""
    if isinstance(value, Mapping):
        value = value.get("low")
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        # OverflowError: JSON's Infinity/-Infinity.
        return None
    if number <= 0:
        return None
    if number > _MS_THRESHOLD:
        number //= 1000
    try:
        return datetime.fromtimestamp(number, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def phone_or_none(raw: str) -> str | None:
    """E.164 for a phone-like WhatsApp address; None for @lid, groups and garbage."""
    if not raw or raw.endswith("@lid") or "@g.us" in raw or raw.endswith("-group"):
        return None
    # WhatsApp addresses are always international, even when short enough to
    # pass for a Brazilian national number (Bolivia's 591…: 11 digits).
    digits = "".join(ch for ch in raw.split("@", 1)[0].split(":", 1)[0] if ch.isdigit())
    if not digits:
        return None
    try:
        return to_e164("+" + digits)
    except ValueError:
        return None


def payload_digest(payload: Any) -> str:
    """A stable key for a delivery that carries no id: identical bodies, identical key."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def require_object(payload: Any) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise PayloadError("the body must be a JSON object")
    return payload


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    """A list field, or nothing; for the lenient readers (event type, dedupe key)."""
    return value if isinstance(value, list) else []


def require_list(container: Mapping[str, Any], field: str, what: str) -> list[Any]:
    """`container[field]` when it is a list, [] when absent or null; PayloadError otherwise."""
    value = container.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError(f"{what}: `{field}` must be a list")
    return value


# Ids and addresses are stored in 255-character columns (message ids, lead identities).
ID_MAX_LENGTH = 255


def id_or_empty(value: Any, what: str) -> str:
    """An id or address field: a string or a number, at most 255 characters; "" when absent.

    Anything else (an object, a list, a boolean, a huge string) is a shape the
    provider never sends: PayloadError, so the intake answers 400.
    """
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PayloadError(f"{what} must be a string")
    text = value if isinstance(value, str) else str(value)
    if len(text) > ID_MAX_LENGTH:
        raise PayloadError(f"{what} longer than {ID_MAX_LENGTH} characters")
    return text


def as_str(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)
