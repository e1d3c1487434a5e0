import json
import logging
import os
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from agent.models import AgentProfile, Flow
from channels.models import Chip, Provider
from conversations.models import Conversation, Lead, Message
from core.logging import JsonFormatter
from core.phones import to_e164
from tests.support.processes import BASE_DIR


@pytest.mark.django_db
def test_seed_demo_creates_a_runnable_sandbox_once(capsys):
    call_command("seed_demo")
    out = capsys.readouterr().out
    assert "Admin user: admin  password: " in out
    password = out.split("password: ")[1].split()[0]
    assert get_user_model().objects.get(username="admin").check_password(password)

    chip = Chip.objects.get()
    assert chip.provider == Provider.SANDBOX
    assert chip.agent_profile.flow.steps.count() == 4
    assert Lead.objects.count() == 3
    assert Conversation.objects.filter(chip=chip).count() == 3
    assert Message.objects.filter(direction="in").exists()

    call_command("seed_demo")
    out = capsys.readouterr().out
    assert "already exists" in out
    assert get_user_model().objects.get(username="admin").check_password(password)
    assert (Chip.objects.count(), AgentProfile.objects.count(), Flow.objects.count()) == (1, 1, 1)
    assert Lead.objects.count() == 3
    assert Message.objects.filter(direction="in").count() == 4


def _import_settings(module: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "SALT_KEY")}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=BASE_DIR,
        env={**clean, "DJANGO_SETTINGS_MODULE": module, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_production_refuses_to_start_without_a_real_secret_key():
    missing = _import_settings("config.settings.production")
    assert missing.returncode != 0
    assert "SECRET_KEY must be set" in missing.stderr

    insecure = _import_settings("config.settings.production", SECRET_KEY="django-insecure-x" * 3)
    assert insecure.returncode != 0

    no_salt = _import_settings("config.settings.production", SECRET_KEY="k" * 50)
    assert no_salt.returncode != 0
    assert "SALT_KEY must be set" in no_salt.stderr

    good = _import_settings("config.settings.production", SECRET_KEY="k" * 50, SALT_KEY="s" * 20)
    assert good.returncode == 0, good.stderr
    assert "started" in good.stdout


def test_a_refused_request_is_logged_once_in_the_development_server():
    # Django's own handler on the "django" logger printed each 4xx a second
    # time (unformatted) when DEBUG is on, as under `make run`.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, logging; django.setup(); "
            "logging.getLogger('django.request').warning('Forbidden: %s', '/webhooks/x/')",
        ],
        cwd=BASE_DIR,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DATABASE_URL": "sqlite://:memory:",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [line for line in done.stderr.splitlines() if "Forbidden" in line]
    assert len(lines) == 1, done.stderr
    assert "WARNING django.request Forbidden: /webhooks/x/" in lines[0]


def test_make_run_starts_web_and_worker_with_the_venv_it_was_given(tmp_path):
    # `make run VENV=…` migrated with that venv's python, then bin/run-dev
    # looked for .venv/bin/python and died. A venv whose python only records
    # how it is called (installed already: its stamp is fresh).
    calls = tmp_path / "calls.log"
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    # web and worker stay up a moment: run-dev stops both when one exits.
    python.write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\ncase "$*" in *runserver*|*qcluster*) sleep 2;; esac\n'
    )
    python.chmod(0o755)
    (tmp_path / "venv" / ".base-installed").touch()
    subprocess.run(
        ["make", "run", f"VENV={tmp_path / 'venv'}"],
        cwd=BASE_DIR,
        env={**os.environ, "RUN_ADDR": "127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    ran = calls.read_text().splitlines()
    assert "manage.py migrate --no-input" in ran
    assert "manage.py runserver --noreload 127.0.0.1:1" in ran
    assert "manage.py qcluster" in ran


def test_json_log_lines_carry_extra_fields():
    record = logging.LogRecord("sdr", logging.ERROR, __file__, 1, "send failed %s", ("x",), None)
    record.chip_id = 7
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "send failed x"
    assert line["level"] == "ERROR"
    assert line["chip_id"] == 7


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("5511999990000", "+5511999990000"),
        ("5511999990000@s.whatsapp.net", "+5511999990000"),
        ("(11) 99999-0000", "+5511999990000"),
        ("+55 21 98765-4321", "+5521987654321"),
        ("551199990011", "+551199990011"),  # landline, 8 digits after the area code
        ("972123456789", "+972123456789"),
        ("021 98888-7777", "+5521988887777"),  # trunk prefix 0
        ("0 21 21 98888-7777", "+5521988887777"),  # trunk prefix and carrier code
    ],
)
def test_to_e164_accepts_what_whatsapp_and_operators_send(raw, expected):
    assert to_e164(raw) == expected


@pytest.mark.parametrize("raw", ["", "oi", "123", "120363000000000011-group@g.us"])
def test_to_e164_rejects_what_is_not_a_phone(raw):
    with pytest.raises(ValueError, match="phone"):
        to_e164(raw)
