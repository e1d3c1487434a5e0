"""Phone numbers in E.164, the one form a lead's phone is stored in."""

import phonenumbers
from django.core.exceptions import ValidationError

DEFAULT_REGION = "BR"


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
    # A bare international number (what every WhatsApp provider sends) has no "+".
    candidate = text if text.startswith("+") else digits
    if not text.startswith("+") and len(digits) > 11:
        candidate = "+" + digits
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {raw!r}") from exc
    if not phonenumbers.is_possible_number(number):
        raise ValueError(f"not a possible phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def validate_e164(value: str) -> None:
    """Model field validator: the stored value must already be normalized E.164."""
    try:
        normalized = to_e164(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc
    if normalized != value:
        raise ValidationError(f"phone must be stored in E.164, e.g. {normalized}")
