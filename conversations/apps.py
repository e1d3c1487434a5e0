from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = _("Conversations")

    def ready(self) -> None:
        from channels.ingest_handler import ingest_handler_register
        from conversations.chatwoot_mirror import handoff_labels_mirror, outbox_settled_mirror
        from conversations.handoff_notify import handoff_notify_enqueue
        from conversations.ingest import event_ingest
        from conversations.outbox import OUTBOX_SETTLED_HOOKS
        from conversations.ownership import handoff_listener_register

        ingest_handler_register(event_ingest)
        handoff_listener_register(handoff_notify_enqueue)
        handoff_listener_register(handoff_labels_mirror)
        if outbox_settled_mirror not in OUTBOX_SETTLED_HOOKS:
            OUTBOX_SETTLED_HOOKS.append(outbox_settled_mirror)
