from django.db import migrations

from core.roles import sync_roles


class Migration(migrations.Migration):
    """Ops see the Chatwoot mirror's rows (core.roles): the groups' permissions again."""

    dependencies = [
        ("core", "0007_alert"),
        ("conversations", "0016_chatwoot_mirror_retry_permission"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
