"""text_redact skips the patterns a text cannot match; it must redact exactly as all of them do."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core import redaction
from core.redaction import REDACTED, SECRET_NAMES, text_redact

# Pieces that make credentials, near-credentials and the letters re.IGNORECASE
# folds to ASCII (long s, dotless i, capital I with a dot, the \u212aelvin sign).
_PIECES = [
    *sorted(SECRET_NAMES),
    "Token",
    "API-\u212aEY",
    "hub.verify_token",
    "=",
    ": ",
    '"',
    "'",
    " ",
    "&",
    "?",
    "/",
    "Bearer ",
    "basic ",
    "/webhooks/zapi/",
    "/instances/3C/token/",
    "https://hooks.slack.com/services/T0/B0/",
    "\u017f",
    "\u212a",
    "\u0131",
    "\u0130",
    "-",
    ".",
    "s3cr3t-value-123456",
    "olá",
]


def _all_patterns(text: str) -> str:
    for pattern, replacement in redaction._PATTERNS:
        text = pattern.sub(replacement, text)
    return text


@given(st.lists(st.sampled_from(_PIECES), max_size=12).map("".join))
def test_skipping_patterns_changes_nothing_for_credential_shaped_text(text):
    assert text_redact(text) == _all_patterns(text)


@given(st.text(max_size=80))
def test_skipping_patterns_changes_nothing_for_any_text(text):
    assert text_redact(text) == _all_patterns(text)


def test_credentials_spelled_with_letters_regex_folds_are_still_redacted():
    assert text_redact("\u017fecret=hunter2hunter2") == f"\u017fecret={REDACTED}"
    assert text_redact("coo\u212aie: abcdefgh") == f"coo\u212aie: {REDACTED}"
    assert text_redact("ap\u0130key=abcdefgh") == f"ap\u0130key={REDACTED}"


def test_a_line_without_credentials_is_unchanged():
    line = "webhook received provider=zapi chip=1 event=ReceivedCallback id=5 outcome=accepted"
    assert text_redact(line) == line
