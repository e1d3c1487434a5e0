import core.fields
from django.db import migrations

from core.redaction import mapping_redact, text_redact
from core.roles import sync_roles

SECRET_FIELDS = ["api_token", "client_token", "app_secret", "verify_token", "webhook_token"]


def encrypt_chip_secrets(apps, schema_editor):
    """Rewrite every stored credential encrypted (read back as plaintext, saved as Fernet)."""
    Chip = apps.get_model("channels", "Chip")
    for chip in Chip.objects.only("pk", *SECRET_FIELDS).iterator(chunk_size=500):
        chip.save(update_fields=SECRET_FIELDS)


def decrypt_chip_secrets(apps, schema_editor):
    """Back to plaintext, written around the field (which would encrypt again)."""
    Chip = apps.get_model("channels", "Chip")
    quote = schema_editor.quote_name
    assignments = ", ".join(f"{quote(name)} = %s" for name in SECRET_FIELDS)
    sql = f"UPDATE {quote(Chip._meta.db_table)} SET {assignments} WHERE id = %s"
    for chip in Chip.objects.only("pk", *SECRET_FIELDS).iterator(chunk_size=500):
        schema_editor.execute(sql, [*(getattr(chip, name) for name in SECRET_FIELDS), chip.pk])


def strip_stored_event_credentials(apps, schema_editor):
    """Events stored before intake stripped credentials (Evolution's body `apikey`)."""
    WebhookEvent = apps.get_model("channels", "WebhookEvent")
    suspects = WebhookEvent.objects.filter(payload__has_key="apikey") | WebhookEvent.objects.exclude(
        raw_body=""
    )
    for event in suspects.only("pk", "payload", "headers", "raw_body").iterator(chunk_size=500):
        event.payload = mapping_redact(event.payload)
        event.headers = mapping_redact(event.headers)
        event.raw_body = text_redact(event.raw_body)
        event.save(update_fields=["payload", "headers", "raw_body"])


class Migration(migrations.Migration):

    dependencies = [
        ('channels', '0002_chip_action_permissions'),
        ('core', '0007_alert'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='chip',
            options={'ordering': ['name'], 'permissions': [('block_chip', 'Pode bloquear e desbloquear chips'), ('reset_circuit_chip', 'Pode reiniciar o circuit breaker de chips'), ('reveal_credentials_chip', 'Pode revelar as credenciais de chips'), ('rotate_webhook_key_chip', 'Pode trocar a chave do webhook de chips')]},
        ),
        migrations.AlterField(
            model_name='chip',
            name='api_token',
            field=core.fields.SecretField(blank=True, help_text='Token used to send', max_length=500),
        ),
        migrations.AlterField(
            model_name='chip',
            name='app_secret',
            field=core.fields.SecretField(blank=True, help_text='Meta app secret: verifies X-Hub-Signature-256', max_length=200),
        ),
        migrations.AlterField(
            model_name='chip',
            name='client_token',
            field=core.fields.SecretField(blank=True, help_text='Z-API account security token (Client-Token)', max_length=200),
        ),
        migrations.AlterField(
            model_name='chip',
            name='verify_token',
            field=core.fields.SecretField(blank=True, help_text='Meta webhook verify token (GET handshake)', max_length=200),
        ),
        migrations.AlterField(
            model_name='chip',
            name='webhook_token',
            field=core.fields.SecretField(blank=True, help_text='Optional extra webhook secret: Evolution apikey/JWT key, Z-API z-api-token', max_length=500),
        ),
        migrations.RunPython(encrypt_chip_secrets, decrypt_chip_secrets),
        migrations.RunPython(strip_stored_event_credentials, migrations.RunPython.noop),
        # Ops may reveal credentials and rotate webhook keys (core/roles.py).
        migrations.RunPython(sync_roles, migrations.RunPython.noop),
    ]
