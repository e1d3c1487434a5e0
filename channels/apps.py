from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save
from django.utils.translation import gettext_lazy as _


class ChannelsConfig(AppConfig):
    name = "channels"
    verbose_name = _("Channels (chips and webhooks)")

    def ready(self) -> None:
        from channels.chip_cache import chip_cache_clear
        from channels.models import Chip
        from core.fields import secret_keys_derive

        post_save.connect(chip_cache_clear, sender=Chip, dispatch_uid="chip_cache_clear_save")
        post_delete.connect(chip_cache_clear, sender=Chip, dispatch_uid="chip_cache_clear_delete")
        # Before gunicorn or django-q2 fork their workers (see core.fields).
        secret_keys_derive()
