from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.core.signals import setting_changed
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class CoreConfig(AppConfig):
    # This module also holds OpsAdminConfig: say which one "core" means.
    default = True
    name = "core"
    verbose_name = _("Platform")

    def ready(self) -> None:
        from core import checks  # noqa: F401  (registers the system checks)
        from core.logging import known_secrets_forget
        from core.metrics import connect_flushes, register_collectors
        from core.process_lifetime import process_lifetime_setup
        from core.schedules import ensure_schedules

        post_migrate.connect(ensure_schedules, sender=self)
        register_collectors()
        process_lifetime_setup()
        connect_flushes()
        setting_changed.connect(known_secrets_forget)


class OpsAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the dashboard as the home page (core/admin_site.py)."""

    default = False
    default_site = "core.admin_site.OpsAdminSite"
