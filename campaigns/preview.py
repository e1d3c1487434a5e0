"""What a campaign's message will look like for real recipients, before it starts."""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.models import Campaign
from campaigns.rendering import (
    lead_variables,
    recipient_text,
    template_variable_names,
    template_variants,
    variant_index,
)


@dataclass(frozen=True)
class PreviewRow:
    lead: str
    phone: str
    variant: int
    text: str
    empty_variables: list[str]


@dataclass(frozen=True)
class Preview:
    variants: int
    rows: list[PreviewRow]
    recipients: int


def campaign_preview(campaign: Campaign, *, sample: int = 10) -> Preview:
    """The rendered text for the first `sample` recipients, with variables they lack."""
    variants = template_variants(campaign.message_template)
    recipients = campaign.recipients.select_related("lead").order_by("pk")
    rows = []
    for recipient in recipients[:sample]:
        lead = recipient.lead
        variables = lead_variables(
            name=lead.name,
            company=lead.company,
            email=lead.email,
            phone=lead.phone or "",
            attributes=lead.attributes,
            extra=recipient.variables,
        )
        index = variant_index(campaign_id=campaign.pk, lead_id=lead.pk, count=len(variants))
        used = template_variable_names(variants[index] if variants else "")
        rows.append(
            PreviewRow(
                lead=lead.name or str(lead),
                phone=lead.phone or "",
                variant=index + 1,
                text=recipient_text(
                    variants=variants,
                    campaign_id=campaign.pk,
                    lead_id=lead.pk,
                    variables=variables,
                ),
                empty_variables=sorted(name for name in used if not variables.get(name)),
            )
        )
    return Preview(variants=len(variants), rows=rows, recipients=recipients.count())
