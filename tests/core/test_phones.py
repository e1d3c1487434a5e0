"""E.164 normalisation: the fast path for plain Brazilian numbers agrees with libphonenumber."""

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.phones import to_e164


def libphonenumber_e164(raw: str) -> str | None:
    """What libphonenumber alone says, the way to_e164 calls it (None: not a phone)."""
    text = raw.strip().split("@", 1)[0].split(":", 1)[0]
    digits = "".join(ch for ch in text if ch.isdigit())
    if not digits:
        return None
    candidate = text if text.startswith("+") else digits
    if not text.startswith("+") and len(digits) > 11 and not digits.startswith("0"):
        candidate = "+" + digits
    try:
        number = phonenumbers.parse(candidate, "BR")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def ours(raw: str) -> str | None:
    try:
        return to_e164(raw)
    except ValueError:
        return None


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("(11) 91234-5678", "+5511912345678"),
        ("11912345678", "+5511912345678"),
        ("+55 11 9 1234-5678", "+5511912345678"),
        ("5511912345678", "+5511912345678"),
        ("(21) 3456-7890", "+552134567890"),
        ("+55 (91) 98765.4321", "+5591987654321"),
        ("021 98888-7777", "+5521988887777"),  # trunk 0: libphonenumber's path
        ("0 21 21 98888-7777", "+5521988887777"),  # with a carrier code
        ("+1 415 555 2671", "+14155552671"),
    ],
)
def test_the_formats_operators_type(raw, e164):
    assert to_e164(raw) == e164 == libphonenumber_e164(raw)


_separators = st.sampled_from(["", "", " ", "-", ".", "(", ")", "x", "/"])


@st.composite
def typed_phones(draw):
    prefix = draw(st.sampled_from(["", "", "+55", "55", "+55 ", "0", "+", "90", "+1 ", "00"]))
    national = draw(st.text("0123456789", min_size=6, max_size=13))
    typed = "".join(draw(_separators) + digit for digit in national)
    return prefix + typed + draw(st.sampled_from(["", " ", "@s.whatsapp.net"]))


@settings(max_examples=3000, deadline=None, derandomize=True)
@given(typed_phones())
@example("5511912345")
@example("90 11 91234-5678")
@example("+55 90 1234-5678")
@example("1091234567")
def test_the_fast_path_agrees_with_libphonenumber(raw):
    assert ours(raw) == libphonenumber_e164(raw)
