"""diagnose, the platform's system checks, and a real PostgreSQL backup restored."""

import io
import json
import shutil
import subprocess
from datetime import timedelta

import httpx
import psycopg
import pytest
import respx
from django.core.checks import run_checks
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from channels.models import Chip
from conversations.models import ChatwootMirror, Message
from tests.factories import channels as channel_f
from tests.factories import conversations as conv_f
from tests.factories import core as core_f


@pytest.mark.django_db
def test_diagnose_prints_what_the_script_gathered_without_secrets(capsys, settings):
    settings.SLACK_WEBHOOK_URL = "https://hooks.slack.example/services/T0/B0/SECRET"
    settings.OPENAI_API_KEY = "sk-very-secret"
    core_f.WorkerHeartbeatFactory(beat_at=timezone.now() - timedelta(minutes=9))
    channel_f.ChipFactory(
        name="Chip RJ", status=Chip.Status.RESTRICTED, api_token="tok-secret", last_error="403"
    )
    conv_f.OutboundMessageFactory(
        status="failed", outcome="failed_provider", failed_at=timezone.now()
    )
    core_f.AlertFactory(title="Chip RJ: restrito")

    call_command("diagnose")

    out = capsys.readouterr().out
    for section in ["health", "worker", "outbox", "chips", "agent", "alerts", "configuration"]:
        assert section in out
    assert "stale: True" in out
    assert "failed_24h: 1" in out
    assert "Chip RJ [sandbox] restricted" in out
    assert "[open] Chip RJ: restrito" in out
    assert "slack: True" in out
    for secret in ["SECRET", "sk-very-secret", "tok-secret"]:
        assert secret not in out


@pytest.mark.django_db
def test_diagnose_shows_what_waits_for_chatwoot(capsys, fake_chatwoot):
    conversation = conv_f.ConversationFactory(lead__phone="+5511999990001")
    message = conv_f.InboundMessageFactory(conversation=conversation)
    ChatwootMirror.objects.create(
        conversation=conversation,
        message=message,
        kind=ChatwootMirror.Kind.MESSAGE,
        next_attempt_at=timezone.now(),
    )

    call_command("diagnose", "--json")

    report = json.loads(capsys.readouterr().out)
    assert report["chatwoot mirror"]["configured"] is True
    assert report["chatwoot mirror"]["waiting"] == 1
    assert report["health"]["chatwoot"] == "ok"
    assert "chatwoot-api-token-for-tests" not in json.dumps(report)


@pytest.mark.django_db
def test_diagnose_json_is_machine_readable(capsys):
    call_command("diagnose", "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["outbox"]["pending"] == 0
    assert report["health"]["database"] == "ok"


@pytest.mark.django_db
def test_check_flags_an_active_chip_without_its_send_credentials():
    out = io.StringIO()
    channel_f.ChipFactory(name="Z sem token", provider="zapi", instance_id="abc", api_token="")
    channel_f.ChipFactory(name="Z completo", provider="zapi", instance_id="abc", api_token="t")
    channel_f.ChipFactory(
        name="Z desligado", provider="zapi", status=Chip.Status.DISCONNECTED, api_token=""
    )

    errors = [e for e in run_checks(tags=["sdr"], databases=["default"]) if e.id == "sdr.W001"]

    assert [e.msg for e in errors] == ["Chip 'Z sem token' (zapi) is active but has no api_token."]
    call_command("check", "--database", "default", stdout=out, stderr=out)
    assert "sdr.W001" in out.getvalue()
    # A warning, never an error: migrate runs database checks and must not be blocked.
    call_command("check", "--database", "default", "--fail-level", "ERROR")


@pytest.mark.django_db
def test_deploy_checks_find_integrations_that_refuse(settings):
    settings.Q_BROKER = "redis"
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.SLACK_WEBHOOK_URL = "https://hooks.slack.example/services/T0/B0/revoked"
    settings.CHATWOOT_URL = "https://chatwoot.example"
    settings.CHATWOOT_API_TOKEN = "cw-token"
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = "https://llm.example/v1"
    with respx.mock() as router:
        router.post(settings.SLACK_WEBHOOK_URL).respond(404, text="no_service")
        router.get("https://chatwoot.example/api/v1/profile").respond(401)
        router.get("https://llm.example/v1/models").respond(200, json={"data": []})

        problems = run_checks(tags=["sdr"], include_deployment_checks=True)

    found = {p.id: p.msg for p in problems}
    assert set(found) == {"sdr.E002", "sdr.W003", "sdr.W004"}
    assert found["sdr.W003"] == "Slack is configured but refuses: HTTP 404."
    assert "cw-token" not in " ".join(p.hint or "" for p in problems)


@pytest.mark.django_db
def test_deploy_checks_pass_when_integrations_answer(settings):
    settings.SLACK_WEBHOOK_URL = "https://hooks.slack.example/services/T0/B0/live"
    with respx.mock() as router:
        router.post(settings.SLACK_WEBHOOK_URL).mock(
            return_value=httpx.Response(400, text="no_text")
        )
        assert run_checks(tags=["sdr"], include_deployment_checks=True) == []


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_backup_and_restore_of_postgresql_with_pg_dump(tmp_path):
    """docs/runbooks.md's backup and restore, once, against a real dump."""
    pg_dump, pg_restore = shutil.which("pg_dump"), shutil.which("pg_restore")
    assert pg_dump, "pg_dump not found: apt-get install postgresql-client"
    assert pg_restore, "pg_restore not found: apt-get install postgresql-client"
    conv_f.InboundMessageFactory.create_batch(3)
    settings_dict = connection.settings_dict
    server = f"postgresql://{settings_dict['USER']}@{settings_dict['HOST']}:{settings_dict['PORT']}"
    source = f"{server}/{settings_dict['NAME']}"
    scratch = f"{settings_dict['NAME']}_restore"
    dump = tmp_path / "sdr_ops.dump"

    subprocess.run(
        [pg_dump, "--format=custom", "--no-owner", f"--file={dump}", source],
        check=True,
        timeout=120,
    )
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
        admin.execute(f'CREATE DATABASE "{scratch}"')
    try:
        subprocess.run(
            [
                pg_restore,
                "--no-owner",
                "--exit-on-error",
                f"--dbname={server}/{scratch}",
                str(dump),
            ],
            check=True,
            timeout=120,
        )
        with psycopg.connect(f"{server}/{scratch}") as restored:
            messages = restored.execute("SELECT count(*) FROM conversations_message").fetchone()
            migrations = restored.execute("SELECT count(*) FROM django_migrations").fetchone()
        assert messages[0] == Message.objects.count() == 3
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM django_migrations")
            assert migrations[0] == cursor.fetchone()[0]
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
