"""Model fields shared by the apps."""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.functional import cached_property
from encrypted_fields.fields import EncryptedCharField

# Every Fernet token starts with its version byte 0x80, base64 "gAAAAA".
_FERNET_PREFIX = "gAAAAA"

# The library derives its keys (PBKDF2, 100,000 rounds) once per field: a
# chip's five credentials cost every new process five derivations on its first
# chip (about 70 ms of CPU here, again after every worker recycle). They all
# derive the same keys from the same settings, so they share one derivation.
_derived: dict[tuple[tuple[str, ...], tuple[str, ...]], list[bytes]] = {}
_derived_lock = threading.Lock()


def _key_settings() -> tuple[tuple[str, ...], tuple[str, ...]]:
    salts = settings.SALT_KEY if isinstance(settings.SALT_KEY, list) else [settings.SALT_KEY]
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return tuple(secrets), tuple(salts)


class SecretField(EncryptedCharField):
    """A credential, encrypted at rest by django-fernet-encrypted-fields.

    The key is derived from SECRET_KEY and SALT_KEY (SECRET_KEY_FALLBACKS and
    extra SALT_KEY entries still decrypt, for rotation). A blank value stays
    blank (the library would store NULL), and a stored token that no key
    decrypts is an error rather than a ciphertext handed to a provider as if
    it were the credential.
    """

    @cached_property
    def keys(self) -> list[bytes]:
        # The library's own derivation, run by the first field that needs it.
        with _derived_lock:
            key = _key_settings()
            keys = _derived.get(key)
            if keys is None:
                keys = _derived[key] = EncryptedCharField.keys.func(self)
            return keys

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


def secret_keys_derive() -> None:
    """Derive the credentials' keys now, in a process about to fork its workers.

    Called when the apps are ready: a web or task worker forked afterwards
    inherits them instead of spending its first chip's time deriving them.
    """
    from django.apps import apps

    for model in apps.get_models():
        for field in model._meta.get_fields():
            if isinstance(field, SecretField):
                field.keys  # noqa: B018 - the cached derivation is the point
                return
