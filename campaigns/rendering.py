"""A campaign's text for one lead: the variant they get and its variables filled in.

Templates use `{{nome}}`, `{{empresa}}` and any column imported with the
audience (or key of `Lead.attributes`). Variants are separated by a line
holding only `---`; a lead always gets the same variant of a campaign, so a
preview, a retry and a resend agree.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

_VARIABLE = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")
_SEPARATOR = re.compile(r"^\s*---+\s*$", re.MULTILINE)


def template_variants(text: str) -> list[str]:
    """The non-empty variants of a template, in order."""
    return [part.strip() for part in _SEPARATOR.split(text or "") if part.strip()]


def variant_index(*, campaign_id: int, lead_id: int, count: int) -> int:
    """Which variant a lead gets: stable across runs and processes (no `hash()` salt)."""
    if count <= 1:
        return 0
    digest = hashlib.blake2b(f"{campaign_id}:{lead_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def lead_variables(
    *,
    name: str,
    company: str = "",
    email: str = "",
    phone: str = "",
    attributes: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Template variables for a lead; imported columns (`extra`) win over stored attributes."""
    first_name = (name or "").strip().split(" ", 1)[0]
    values: dict[str, str] = {}
    for source in (attributes or {}, extra or {}):
        for key, value in source.items():
            if value is not None and not isinstance(value, dict | list):
                values[str(key).strip().lower()] = str(value)
    values.update(
        {
            "nome": name or values.get("nome", ""),
            "name": name or values.get("name", ""),
            "primeiro_nome": first_name,
            "empresa": company or values.get("empresa", ""),
            "company": company or values.get("company", ""),
            "email": email or values.get("email", ""),
            "telefone": phone,
            "phone": phone,
        }
    )
    return values


def template_render(template: str, variables: Mapping[str, str]) -> str:
    """Fill `{{key}}` (case-insensitive); an unknown key becomes empty, never a crash."""
    text = _VARIABLE.sub(lambda match: variables.get(match.group(1).lower(), ""), template)
    # A missing name must not leave "Oi , tudo bem?".
    return re.sub(r"[ \t]+([,.!?])", r"\1", text).strip()


def template_variable_names(template: str) -> set[str]:
    return {name.lower() for name in _VARIABLE.findall(template or "")}


def recipient_text(
    *,
    variants: list[str],
    campaign_id: int,
    lead_id: int,
    variables: Mapping[str, str],
) -> str:
    """The lead's variant (from `template_variants`, split once per campaign) filled in."""
    variants = variants or [""]
    chosen = variants[variant_index(campaign_id=campaign_id, lead_id=lead_id, count=len(variants))]
    return template_render(chosen, variables)
