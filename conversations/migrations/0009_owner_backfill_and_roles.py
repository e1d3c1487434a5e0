from django.db import migrations

from core.roles import sync_roles


def owner_backfill(apps, schema_editor):
    """Conversations before the owner field: a pause or a close becomes the owner."""
    Conversation = apps.get_model("conversations", "Conversation")
    Conversation.objects.filter(status="closed").update(controlled_by="closed", agent_paused=True)
    Conversation.objects.filter(controlled_by="agent", agent_paused=True).update(
        controlled_by="paused"
    )


class Migration(migrations.Migration):
    """Explicit owners for existing conversations; sdr and ops may take conversations over."""

    dependencies = [
        ("conversations", "0008_ownership_and_handoff_lifecycle"),
        ("core", "0007_alert"),
    ]

    operations = [
        migrations.RunPython(owner_backfill, migrations.RunPython.noop),
        migrations.RunPython(sync_roles, migrations.RunPython.noop),
    ]
