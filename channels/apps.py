from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save
from django.utils.translation import gettext_lazy as _


class ChannelsConfig(AppConfig):
    name = "channels"
    verbose_name = _("Channels (chips and webhooks)")

    def ready(self) -> None:
        from channels.chip_cache import chip_cache_clear
        from channels.http import tls_context
        from channels.models import Chip
        from channels.providers.base import adapters_load
        from core.fields import secret_keys_derive
        from core.process_lifetime import task_cluster_process

        post_save.connect(chip_cache_clear, sender=Chip, dispatch_uid="chip_cache_clear_save")
        post_delete.connect(chip_cache_clear, sender=Chip, dispatch_uid="chip_cache_clear_delete")
        # Before gunicorn or django-q2 fork their workers (see core.fields).
        secret_keys_derive()
        if task_cluster_process():
            # What every task worker's first send would build, built once before
            # the cluster forks its workers, which inherit it (again after each
            # recycle): the TLS context (the CA bundle read) and the adapters.
            tls_context()
            adapters_load()
