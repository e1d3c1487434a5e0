from django.db import migrations

from core.roles import sync_roles


class Migration(migrations.Migration):
    """Ops may reprocess messages and conversations; ops and managers may use the sandbox chat."""

    dependencies = [
        ("agent", "0003_agent_runtime"),
        ("conversations", "0004_reprocess_permissions"),
        ("core", "0004_outbox_roles"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
