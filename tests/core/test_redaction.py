"""text_redact skips the patterns a text cannot match; it must redact exactly as all of them do."""

from __future__ import annotations

import copy
from types import MappingProxyType

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


# --- mapping_redact ---------------------------------------------------------------------------


def _redact_by_copy(value):
    """The plain definition: a copy with every non-empty credential-named key's value hidden."""
    if isinstance(value, dict):
        return {
            key: REDACTED
            if isinstance(key, str) and redaction.is_secret_name(key) and item not in (None, "")
            else _redact_by_copy(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redact_by_copy(item) for item in value]
    return value


_KEYS = st.sampled_from(["apikey", "Api-Key", "token", "text", "id", "data", "hub.verify_token"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from(["", "x", "s3cr3t"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=20,
)


@given(_JSON)
def test_mapping_redact_hides_what_the_plain_definition_hides_and_changes_no_input(value):
    before = copy.deepcopy(value)
    redacted = redaction.mapping_redact(value)
    assert redacted == _redact_by_copy(before)
    assert value == before
    # Nothing to hide: the value itself, so intake can store the body as received.
    assert (redacted is value) == (redacted == before)


def test_only_the_path_to_a_credential_is_copied():
    untouched = {"text": {"message": "oi"}}
    body = {"data": {"apikey": "s3cr3t", "extra": untouched}, "other": [untouched]}
    redacted = redaction.mapping_redact(body)
    assert redacted == {"data": {"apikey": REDACTED, "extra": untouched}, "other": [untouched]}
    assert body["data"]["apikey"] == "s3cr3t"
    assert redacted["other"] is body["other"]


def test_a_mapping_of_another_kind_comes_back_as_a_dict():
    headers = MappingProxyType({"content-type": "application/json"})
    assert redaction.mapping_redact(headers) == {"content-type": "application/json"}
    assert type(redaction.mapping_redact(headers)) is dict
