"""How a provider reaches a lead: their phone, else the id that provider knows them by."""

from __future__ import annotations

from conversations.models import Lead, LeadIdentity, Message


def lead_address(message: Message) -> str:
    """Where the provider reaches the lead: the phone, else their id on that provider."""
    lead = message.conversation.lead
    if lead.phone:
        return lead.phone.lstrip("+")
    identity = (
        LeadIdentity.objects.filter(lead=lead, provider=message.chip.provider)
        .order_by("-last_seen_at")
        .values_list("external_id", flat=True)
        .first()
    )
    return identity or ""


def lead_addresses(lead: Lead, *, provider: str) -> list[str]:
    """Every way `provider`'s payloads name the lead: the phone's digits and its ids there."""
    identities = LeadIdentity.objects.filter(lead=lead, provider=provider).values_list(
        "external_id", flat=True
    )
    phone = lead.phone.lstrip("+") if lead.phone else ""
    return [address for address in dict.fromkeys([phone, *identities]) if address]
