"""Model fields shared by the apps."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from encrypted_fields.fields import EncryptedCharField

# Every Fernet token starts with its version byte 0x80, base64 "gAAAAA".
_FERNET_PREFIX = "gAAAAA"


class SecretField(EncryptedCharField):
    """A credential, encrypted at rest by django-fernet-encrypted-fields.

    The key is derived from SECRET_KEY and SALT_KEY (SECRET_KEY_FALLBACKS and
    extra SALT_KEY entries still decrypt, for rotation). A blank value stays
    blank (the library would store NULL), and a stored token that no key
    decrypts is an error rather than a ciphertext handed to a provider as if
    it were the credential.
    """

    def get_prep_value(self, value: Any) -> Any:
        if value in (None, ""):
            return value
        return super().get_prep_value(value)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        plain = super().from_db_value(value, expression, connection)
        if isinstance(value, str) and plain == value and value.startswith(_FERNET_PREFIX):
            raise ImproperlyConfigured(
                f"{self.model.__name__}.{self.name} cannot be decrypted: SECRET_KEY or "
                "SALT_KEY changed without keeping the old value in SECRET_KEY_FALLBACKS "
                "or SALT_KEY."
            )
        return plain
