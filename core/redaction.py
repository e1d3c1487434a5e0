"""Removing secrets from text and structures before anyone sees or stores them.

Pure functions (no database): the logging filter, the webhook intake and the
admin displays all call these, so what counts as a secret is decided once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[redacted]"

# Names (of query parameters, headers, JSON keys) whose value is a credential.
# Compared lowercased, with `-` and `.` read as `_` (`hub.verify_token`,
# `z-api-token`).
SECRET_NAMES = frozenset(
    {
        "hub_verify_token",
        "verify_token",
        "token",
        "access_token",
        "api_token",
        "apikey",
        "api_key",
        "app_secret",
        "client_token",
        "z_api_token",
        "x_sandbox_token",
        "webhook_token",
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "password",
        "secret",
        "jwt",
        "jwt_key",
    }
)
_NAME_PATTERN = "|".join(
    sorted((re.escape(name).replace("_", "[-_.]") for name in SECRET_NAMES), key=len, reverse=True)
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # The chip's key in a webhook URL: /webhooks/<provider>/<key>/ (Chatwoot's too).
    (re.compile(r"(/webhooks/[A-Za-z0-9_-]{1,40}/)[^/\s?#\"'<>]+"), rf"\1{REDACTED}"),
    # Z-API puts the instance token in the path: /instances/<id>/token/<token>/.
    (re.compile(r"(/token/)[^/\s?#\"'<>]+", re.IGNORECASE), rf"\1{REDACTED}"),
    # Slack incoming-webhook URLs are bearer credentials in full.
    (
        re.compile(r"(hooks\.slack\.com/)[^\s\"'<>]+", re.IGNORECASE),
        rf"\1{REDACTED}",
    ),
    # Query strings and form bodies: hub.verify_token=…, token=…, apikey=…
    (
        re.compile(rf"(?i)((?:^|[?&;\s])(?:{_NAME_PATTERN})=)[^&\s#\"'<>]*"),
        rf"\1{REDACTED}",
    ),
    # Headers and JSON-ish text: `apikey: …`, `"token": "…"`, `Authorization: Bearer …`.
    (
        re.compile(
            rf"(?i)([\"']?\b(?:{_NAME_PATTERN})[\"']?\s*[:=]\s*[\"']?)"
            r"(?:(?:bearer|basic|token)\s+)?[^\s\"',}&]+"
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1{REDACTED}"),
)

# Known secret values shorter than this are not searched for: redacting every
# "1" in a log line would destroy it without protecting anything.
MIN_KNOWN_SECRET_LENGTH = 8


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


# Remembered: every delivery of a provider has the same few dozen keys, and the
# walk over a body asks for each (a fifth of the walk's cost). Bounded, as keys
# come from strangers' bodies too.
@functools.lru_cache(maxsize=8192)
def is_secret_name(name: str) -> bool:
    return name.lower().replace("-", "_").replace(".", "_") in SECRET_NAMES


# re.IGNORECASE matches four non-ASCII letters to ASCII ones (capital I with a
# dot and dotless i to "i", long s to "s", the Kelvin sign to "k"): folded the
# same way before the `in` checks below.
_IGNORECASE_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


def _patterns_that_may_match(text: str) -> list[int]:
    """The indexes in _PATTERNS whose literal part `text` holds (no match is possible otherwise).

    Every log line goes through text_redact; most hold no credential at all,
    and six regular expressions over each cost more than the rest of logging.
    """
    lowered = text.translate(_IGNORECASE_FOLD).lower()
    names = lowered.replace("-", "_").replace(".", "_")
    has_name = any(name in names for name in SECRET_NAMES)
    checks = (
        "/webhooks/" in text,
        "/token/" in lowered,
        "hooks.slack.com/" in lowered,
        has_name,
        has_name,
        "bearer" in lowered,
    )
    return [index for index, possible in enumerate(checks) if possible]


def text_redact(text: str, known_secrets: Iterable[str] = ()) -> str:
    """`text` with every credential we can recognise replaced by REDACTED."""
    for secret in known_secrets:
        if secret and len(secret) >= MIN_KNOWN_SECRET_LENGTH and secret in text:
            text = text.replace(secret, REDACTED)
    for index in _patterns_that_may_match(text):
        pattern, replacement = _PATTERNS[index]
        text = pattern.sub(replacement, text)
    return text


def mapping_redact(value: Any) -> Any:
    """A JSON-like value whose credential-named keys hold REDACTED.

    Nested objects and lists are walked; a secret-named key with an empty or
    null value keeps it (nothing to hide, and the shape stays readable). A
    dict or list with no credential in it is returned itself, not a copy, so
    intake can tell that a body it stores is the one it received; a mapping
    of another kind always comes back as a dict.
    """
    kind = type(value)
    if kind in _JSON_SCALARS:
        return value
    if kind is dict or isinstance(value, Mapping):
        changed: dict[Any, Any] | None = None if kind is dict else dict(value)
        for key, item in value.items():
            if isinstance(key, str) and is_secret_name(key) and item not in (None, ""):
                new = REDACTED
            # Scalars are most of a body: no call for them (every webhook is walked).
            elif type(item) in _JSON_SCALARS or (new := mapping_redact(item)) is item:
                continue
            if changed is None:
                changed = dict(value)
            changed[key] = new
        return value if changed is None else changed
    if kind is list or isinstance(value, list):
        items = [item if type(item) in _JSON_SCALARS else mapping_redact(item) for item in value]
        if kind is list and all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items
    return value


def secret_mask(value: str | None, *, visible: int = 4) -> str:
    """`••••abcd`: enough to tell two secrets apart, never enough to use one.

    Secrets shorter than 12 characters show nothing of themselves.
    """
    if not value:
        return ""
    tail = value[-visible:] if len(value) >= 12 else ""
    return "••••" + tail
