"""The credentials' keys: derived once per process, before workers fork."""

import os

import pytest
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from channels.models import Chip
from core import fields
from tests.factories.channels import ChipFactory

SECRET_FIELDS = ["api_token", "client_token", "app_secret", "verify_token", "webhook_token"]


@pytest.fixture
def derivations(monkeypatch):
    """Count PBKDF2 derivations, starting from a process that has none cached."""
    monkeypatch.setattr(fields, "_derived", {})
    for name in SECRET_FIELDS:
        Chip._meta.get_field(name).__dict__.pop("keys", None)
        Chip._meta.get_field(name).__dict__.pop("f", None)
    calls = []
    derive = PBKDF2HMAC.derive

    def counted(self, key_material):
        calls.append(1)
        return derive(self, key_material)

    monkeypatch.setattr(PBKDF2HMAC, "derive", counted)
    yield calls
    for name in SECRET_FIELDS:  # the next tests derive again, for the real settings
        Chip._meta.get_field(name).__dict__.pop("keys", None)
        Chip._meta.get_field(name).__dict__.pop("f", None)


@pytest.mark.django_db
def test_a_chip_with_five_credentials_costs_one_derivation(derivations):
    chip = ChipFactory(
        api_token="a-token-1234", client_token="c-token-1234", webhook_token="w-token-1234"
    )

    loaded = Chip.objects.get(pk=chip.pk)

    assert (loaded.api_token, loaded.client_token, loaded.webhook_token) == (
        "a-token-1234",
        "c-token-1234",
        "w-token-1234",
    )
    assert len(derivations) == 1  # the library alone: five, one per field


def test_a_worker_forked_after_startup_derives_nothing(derivations):
    fields.secret_keys_derive()  # what channels' AppConfig.ready does
    assert len(derivations) == 1

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: its first chip's credentials
        os.close(read)
        before = len(derivations)
        for name in SECRET_FIELDS:
            Chip._meta.get_field(name).f.encrypt(b"x")
        os.write(write, str(len(derivations) - before).encode())
        os._exit(0)
    os.close(write)
    derived_in_child = int(os.read(read, 16) or b"-1")
    os.waitpid(pid, 0)
    assert derived_in_child == 0


def test_the_keys_are_derived_when_the_apps_are_ready():
    """manage.py qcluster and gunicorn fork their workers after django.setup()."""
    import subprocess
    import sys

    code = (
        "import django; django.setup(); from channels.models import Chip; "
        "print('keys' in Chip._meta.get_field('api_token').__dict__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"},
    )
    assert out.stdout.strip() == "True"
