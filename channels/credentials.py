"""A chip's credentials: which they are, how they are shown, revealed and rotated.

Every credential is masked wherever it is displayed; the clear values leave
only through `chip_credentials_reveal` (an explicit, audited act of a role
that needs them) and a rotated webhook key only once, to whoever rotated it.
Nothing here logs a value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from channels.models import Chip, Provider, new_webhook_key
from core.audit import audit_record
from core.models import AuditEntry
from core.redaction import secret_mask

# The Chip fields that hold a credential, with how the admin names them.
SECRET_FIELDS: dict[str, str] = {
    "api_token": _("send token (API)"),
    "client_token": _("Client-Token (Z-API)"),
    "app_secret": _("app secret (Meta)"),
    "verify_token": _("verify token (Meta)"),
    "webhook_token": _("webhook token"),
}

# Providers whose webhooks can carry their own credential besides the URL's
# key (Evolution apikey or JWT, Z-API z-api-token, W-API token, the sandbox
# token). Meta signs every delivery with the app secret, so it never lacks one.
PROVIDER_TOKEN_PROVIDERS = frozenset(
    {Provider.EVOLUTION, Provider.ZAPI, Provider.WAPI, Provider.SANDBOX}
)

Actor = AbstractBaseUser | AnonymousUser | None


@dataclass(frozen=True)
class RevealedCredential:
    label: str
    value: str


def chip_webhook_path(chip: Chip) -> str:
    return reverse("webhook", kwargs={"provider": chip.provider, "chip_key": chip.webhook_key})


def chip_webhook_path_masked(chip: Chip) -> str:
    return f"/webhooks/{chip.provider}/{secret_mask(chip.webhook_key)}/"


def chip_lacks_provider_token(chip: Chip) -> bool:
    """True when anyone holding the URL alone can post as the provider."""
    return chip.provider in PROVIDER_TOKEN_PROVIDERS and not chip.webhook_token


def chip_credentials_reveal(
    *, chip: Chip, actor: Actor, webhook_url: str
) -> list[RevealedCredential]:
    """The chip's clear credentials, with an audit entry naming who saw them.

    `webhook_url` is the absolute URL the caller built for the chip's path.
    """
    audit_record(
        action="chip_credentials_reveal",
        source=AuditEntry.Source.ADMIN,
        actor=actor,
        target=Chip,
        objects=[chip],
        detail={"fields": [name for name in SECRET_FIELDS if getattr(chip, name)]},
    )
    revealed = [RevealedCredential(str(_("webhook URL")), webhook_url)]
    revealed += [
        RevealedCredential(str(label), getattr(chip, name))
        for name, label in SECRET_FIELDS.items()
        if getattr(chip, name)
    ]
    return revealed


def chip_webhook_key_rotate(*, chips: Iterable[Chip], actor: Actor) -> list[Chip]:
    """Give each chip a new webhook key; the old URL answers 404 from now on.

    Returns the chips with their new keys (the only time the caller gets them
    without a reveal).
    """
    rotated = []
    with transaction.atomic():
        for chip in chips:
            chip.webhook_key = new_webhook_key()
            chip.save(update_fields=["webhook_key", "updated_at"])
            rotated.append(chip)
        if rotated:
            audit_record(
                action="chip_webhook_key_rotate",
                source=AuditEntry.Source.ADMIN,
                actor=actor,
                target=Chip,
                objects=rotated,
            )
    return rotated
