from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Plataforma"

    def ready(self) -> None:
        from core.metrics import register_collectors
        from core.schedules import ensure_schedules

        post_migrate.connect(ensure_schedules, sender=self)
        register_collectors()
