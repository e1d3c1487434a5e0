"""Chip credentials in the admin (issue 8, finding 3; rotate and warning from finding 4).

Masked for everyone, encrypted at rest, revealed only to ops through an
audited page, and a one-click webhook key rotation.
"""

from __future__ import annotations

import json
import logging

import pytest
from django import forms
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from channels.credentials import SECRET_FIELDS
from channels.models import Chip
from core.models import AuditEntry
from core.redaction import REDACTED
from tests.channels.webhooks import load_fixture, post_webhook
from tests.factories.channels import ChipFactory

pytestmark = pytest.mark.django_db

SECRETS = {
    "api_token": "api-token-0123456789-ABCD",
    "client_token": "client-token-0123456789-EFGH",
    "app_secret": "app-secret-0123456789-IJKL",
    "verify_token": "verify-token-0123456789-MNOP",
    "webhook_token": "webhook-token-0123456789-QRST",
}


@pytest.fixture
def chip():
    return ChipFactory(provider="zapi", instance_id="A20DA9C0183A2D35A260F53F5D2B9244", **SECRETS)


def _clear_values(chip: Chip) -> list[str]:
    return [*SECRETS.values(), chip.webhook_key]


def _change_url(chip: Chip) -> str:
    return reverse("admin:channels_chip_change", args=[chip.pk])


def _reveal_url(chip: Chip) -> str:
    return reverse("admin:channels_chip_credentials", args=[chip.pk])


def _form_data(response) -> dict[str, str]:
    """What the browser posts back from the change page: secrets were never in it."""
    form = response.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = "" if name in SECRET_FIELDS else form[name].value()
        if isinstance(field, forms.BooleanField):
            if value:
                data[name] = "on"
            continue
        data[name] = "" if value is None else str(value)
    return data


@pytest.mark.parametrize("role", ["manager", "ops"])
def test_chip_pages_show_credentials_masked_to_every_role(role_client, chip, role):
    client = role_client(role)

    for url in (_change_url(chip), reverse("admin:channels_chip_changelist")):
        html = client.get(url).content.decode()
        leaked = [value for value in _clear_values(chip) if value in html]
        assert leaked == [], f"{role} sees {leaked} on {url}"
    change = client.get(_change_url(chip)).content.decode()
    assert "••••QRST" in change  # enough to tell two tokens apart
    assert f"/webhooks/zapi/••••{chip.webhook_key[-4:]}/" in change


def test_superuser_sees_them_masked_too(superuser_client, chip):
    html = superuser_client.get(_change_url(chip)).content.decode()
    assert [value for value in _clear_values(chip) if value in html] == []


def test_ops_edit_a_chip_without_retyping_its_credentials(role_client, chip):
    client = role_client("ops")
    data = _form_data(client.get(_change_url(chip)))
    data["name"] = "Renamed"

    response = client.post(_change_url(chip), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    chip.refresh_from_db()
    assert chip.name == "Renamed"
    assert {name: getattr(chip, name) for name in SECRETS} == SECRETS
    history = LogEntry.objects.get(object_id=str(chip.pk))
    assert json.loads(history.change_message) == [{"changed": {"fields": ["Name"]}}]


def test_ops_replace_one_credential_and_remove_another(role_client, chip):
    client = role_client("ops")
    data = _form_data(client.get(_change_url(chip)))
    data["api_token"] = "new-api-token-999999"
    data["client_token__clear"] = "1"

    assert client.post(_change_url(chip), data).status_code == 302

    chip.refresh_from_db()
    assert chip.api_token == "new-api-token-999999"
    assert chip.client_token == ""
    assert chip.webhook_token == SECRETS["webhook_token"]


def test_credentials_are_encrypted_at_rest(chip):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT api_token, client_token, app_secret, verify_token, webhook_token "
            "FROM channels_chip WHERE id = %s",
            [chip.pk],
        )
        stored = cursor.fetchone()

    for value in stored:
        assert value.startswith("gAAAAA")  # a Fernet token
    assert not set(stored) & set(SECRETS.values())
    assert Chip.objects.get(pk=chip.pk).webhook_token == SECRETS["webhook_token"]


def test_encrypted_webhook_token_still_authenticates_the_provider(client, chip):
    body = load_fixture("zapi", "received__text")

    assert post_webhook(client, chip, body).status_code == 200
    assert post_webhook(client, chip, body, sign=False).status_code == 401


@pytest.mark.parametrize("role", ["manager", "sdr", "staff"])
def test_only_roles_that_need_them_may_reveal(role_client, chip, role):
    client = role_client(role)

    assert client.get(_reveal_url(chip)).status_code == 403
    assert client.post(_reveal_url(chip)).status_code == 403
    assert not AuditEntry.objects.filter(action="chip_credentials_reveal").exists()


def test_manager_has_no_reveal_button(role_client, chip):
    html = role_client("manager").get(_change_url(chip)).content.decode()
    assert _reveal_url(chip) not in html


def test_ops_reveal_after_confirming_and_it_is_audited_not_logged(role_client, chip, caplog):
    caplog.set_level(logging.DEBUG)
    client = role_client("ops")
    assert _reveal_url(chip) in client.get(_change_url(chip)).content.decode()

    confirm = client.get(_reveal_url(chip))
    assert confirm.status_code == 200
    assert [value for value in _clear_values(chip) if value in confirm.content.decode()] == []
    assert not AuditEntry.objects.filter(action="chip_credentials_reveal").exists()

    revealed = client.post(_reveal_url(chip))

    assert revealed.status_code == 200
    html = revealed.content.decode()
    assert all(value in html for value in _clear_values(chip))
    assert "no-store" in revealed["Cache-Control"]
    entry = AuditEntry.objects.get(action="chip_credentials_reveal")
    assert entry.actor.username == "ops-user"
    assert entry.object_ids == [str(chip.pk)]
    assert not [value for value in _clear_values(chip) if value in str(entry.detail)]
    assert not [value for value in _clear_values(chip) if value in caplog.text]


def test_rotate_webhook_key_asks_first_then_shows_the_new_url_once(role_client, client, chip):
    ops = role_client("ops")
    old_key = chip.webhook_key
    changelist = reverse("admin:channels_chip_changelist")
    action = {"action": "rotate_webhook_key", "_selected_action": [chip.pk]}

    confirm = ops.post(changelist, action)
    assert confirm.status_code == 200
    assert "Sim, trocar a chave" in confirm.content.decode()
    chip.refresh_from_db()
    assert chip.webhook_key == old_key

    done = ops.post(changelist, {**action, "post": "yes"})

    chip.refresh_from_db()
    assert chip.webhook_key != old_key
    assert f"/webhooks/zapi/{chip.webhook_key}/" in done.content.decode()
    entry = AuditEntry.objects.get(action="chip_webhook_key_rotate")
    assert (entry.actor.username, entry.object_ids) == ("ops-user", [str(chip.pk)])
    body = load_fixture("zapi", "received__text")
    assert post_webhook(client, chip, body, key=old_key).status_code == 404
    assert post_webhook(client, chip, body).status_code == 200
    # Afterwards the page shows it masked again.
    assert chip.webhook_key not in ops.get(_change_url(chip)).content.decode()


def test_manager_cannot_rotate(role_client, chip):
    manager = role_client("manager")
    old_key = chip.webhook_key

    manager.post(
        reverse("admin:channels_chip_changelist"),
        {"action": "rotate_webhook_key", "_selected_action": [chip.pk], "post": "yes"},
    )

    chip.refresh_from_db()
    assert chip.webhook_key == old_key
    assert not AuditEntry.objects.filter(action="chip_webhook_key_rotate").exists()


@pytest.mark.parametrize(
    ("provider", "webhook_token", "warned"),
    [
        ("evolution", "", True),
        ("zapi", "", True),
        ("wapi", "", True),
        ("sandbox", "", True),
        ("evolution", "evo-token-123456", False),
        ("meta", "", False),  # every Meta delivery is signed with the app secret
    ],
)
def test_warning_on_chips_without_the_providers_own_token(
    role_client, provider, webhook_token, warned
):
    chip = ChipFactory(provider=provider, webhook_token=webhook_token)

    response = role_client("ops").get(_change_url(chip))

    warnings = [str(m) for m in response.context["messages"] if "só pela chave da URL" in str(m)]
    assert bool(warnings) == warned


def test_roles_grant_reveal_and_rotate_to_ops_only():
    def granted(role: str) -> set[str]:
        return set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))

    for codename in ("reveal_credentials_chip", "rotate_webhook_key_chip"):
        assert codename in granted("ops")
        assert codename not in granted("manager")
        assert codename not in granted("sdr")


@pytest.mark.django_db(transaction=True)
def test_migration_encrypts_existing_credentials_and_strips_stored_apikeys():
    before = [("channels", "0002_chip_action_permissions")]
    after = [("channels", "0003_chip_secrets_encrypted")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old_apps = executor.loader.project_state(before).apps
        old_chip = old_apps.get_model("channels", "Chip").objects.create(
            name="legado", provider="evolution", webhook_key="legacy-key", **SECRETS
        )
        old_event = old_apps.get_model("channels", "WebhookEvent").objects.create(
            chip=old_chip,
            provider="evolution",
            payload={"event": "messages.upsert", "apikey": "legacy-body-apikey-1234"},
            headers={"apikey": "***"},
            raw_body="",
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT api_token FROM channels_chip WHERE id = %s", [old_chip.pk])
            assert cursor.fetchone()[0] == SECRETS["api_token"]  # plaintext before

        executor = MigrationExecutor(connection)
        executor.migrate(after)

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT api_token, webhook_token FROM channels_chip WHERE id = %s", [old_chip.pk]
            )
            assert all(value.startswith("gAAAAA") for value in cursor.fetchone())
        # The models as of that migration: later ones may add columns.
        new_apps = executor.loader.project_state(after).apps
        chip = new_apps.get_model("channels", "Chip").objects.get(pk=old_chip.pk)
        assert {name: getattr(chip, name) for name in SECRETS} == SECRETS
        event = new_apps.get_model("channels", "WebhookEvent").objects.get(pk=old_event.pk)
        assert event.payload == {"event": "messages.upsert", "apikey": REDACTED}

    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
