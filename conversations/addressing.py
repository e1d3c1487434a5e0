"""How a provider reaches a lead: their phone, else the id that provider knows them by."""

from __future__ import annotations

from conversations.models import LeadIdentity, Message


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
