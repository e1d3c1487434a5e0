"""Phone numbers in E.164, the one form a lead's phone is stored in."""

from typing import Any

import phonenumbers
from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

DEFAULT_REGION = "BR"
# What operators type around a Brazilian number: "(11) 91234-5678", "+55 11 9 1234.5678".
_PLAIN_FORMATTING = frozenset("0123456789 -().+")


def to_e164(raw: str, *, region: str = DEFAULT_REGION) -> str:
    """Normalize what WhatsApp or an operator typed into E.164 (`+5511999990000`).

    WhatsApp ids come without the plus (`5511999990000`, `5511999990000@s.whatsapp.net`);
    operators type national numbers (`(11) 99999-0000`). Raises ValueError when the
    input is not a possible phone number.
    """
    text = (raw or "").strip()
    text = text.split("@", 1)[0].split(":", 1)[0]
    digits = "".join(ch for ch in text if ch.isdigit())
    if not digits:
        raise ValueError(f"not a phone number: {raw!r}")
    if region == "BR":
        national = _plain_brazilian(text, digits)
        if national is not None:
            return "+55" + national
    return _parse(raw, text=text, digits=digits, region=region)


def _plain_brazilian(text: str, digits: str) -> str | None:
    """The national number of a plainly written Brazilian phone with its area code, else None.

    libphonenumber costs ~60 µs a number, most of a 100,000-row audience
    import. For the shapes nearly every row has (area code + 8 or 9 digits,
    optionally +55 or 55, with spaces, dashes, dots or parentheses) its
    answer is simply +55 and the digits; anything else (a trunk 0 or carrier
    code, an extension, letters, other lengths) goes to libphonenumber.
    tests/core/test_phones.py checks both agree on generated input.
    """
    if not _PLAIN_FORMATTING.issuperset(text) or "+" in text[1:]:
        return None
    if text.startswith("+") or len(digits) > 11:
        if not digits.startswith("55"):
            return None
        national = digits[2:]
    else:
        national = digits
    # A leading 0 or 90 is a trunk prefix / carrier code libphonenumber may strip.
    if len(national) not in (10, 11) or national.startswith(("0", "90")):
        return None
    return national


def _parse(raw: str, *, text: str, digits: str, region: str) -> str:
    # A bare international number (what every WhatsApp provider sends) has no "+".
    candidate = text if text.startswith("+") else digits
    # A leading 0 is Brazil's trunk prefix (`021 98888-7777`, `0 21 21 9…` with a
    # carrier code): a national number, which libphonenumber strips itself.
    if not text.startswith("+") and len(digits) > 11 and not digits.startswith("0"):
        candidate = "+" + digits
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {raw!r}") from exc
    if not phonenumbers.is_possible_number(number):
        raise ValueError(f"not a possible phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


INVALID_PHONE = _("Enter a phone number with its area code, e.g. (11) 91234-5678.")


def validate_e164(value: str) -> None:
    """Model field validator: the stored value must already be normalized E.164."""
    try:
        normalized = to_e164(value)
    except ValueError as exc:
        raise ValidationError(INVALID_PHONE, code="invalid_phone") from exc
    if normalized != value:
        raise ValidationError(
            _("Store the phone in E.164, e.g. %(phone)s."),
            code="not_e164",
            params={"phone": normalized},
        )


class PhoneFormField(forms.CharField):
    """A phone typed however people type it (`(11) 91234-5678`), cleaned to E.164."""

    default_error_messages = {"invalid_phone": INVALID_PHONE}

    def to_python(self, value: Any) -> Any:
        value = super().to_python(value)
        if value in self.empty_values:
            return value
        try:
            return to_e164(value)
        except ValueError as exc:
            raise ValidationError(
                self.error_messages["invalid_phone"], code="invalid_phone"
            ) from exc
