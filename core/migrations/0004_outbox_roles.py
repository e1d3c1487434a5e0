from django.db import migrations

from core.roles import sync_roles


class Migration(migrations.Migration):
    """Ops get the outbox and chip admin actions (retry, cancel, block, reset circuit)."""

    dependencies = [
        ("core", "0003_metric_counter"),
        ("channels", "0002_chip_action_permissions"),
        ("conversations", "0003_message_action_permissions"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
