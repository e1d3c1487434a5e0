from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = _("Campaigns")

    def ready(self) -> None:
        from campaigns.followups import follow_up_outbox_gate
        from campaigns.services import (
            campaign_message_settled,
            campaign_outbox_gate,
            campaigns_chip_revoked,
        )
        from channels.quarantine import CHIP_REVOKED_HOOKS
        from conversations.outbox import OUTBOX_GATES, OUTBOX_SETTLED_HOOKS

        # The lower layers call campaigns only through these registries.
        for registry, hook in (
            (CHIP_REVOKED_HOOKS, campaigns_chip_revoked),
            (OUTBOX_GATES, campaign_outbox_gate),
            (OUTBOX_GATES, follow_up_outbox_gate),
            (OUTBOX_SETTLED_HOOKS, campaign_message_settled),
        ):
            if hook not in registry:
                registry.append(hook)
