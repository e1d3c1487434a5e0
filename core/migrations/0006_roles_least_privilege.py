from django.db import migrations

from core.roles import sync_roles


class Migration(migrations.Migration):
    """Ops lose change on django-q2 schedules and gain the resubmit permission;
    SDRs lose add on messages (outbound messages come only from services)."""

    dependencies = [("core", "0005_audit_entry")]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
