"""`manage.py check --deploy` with production settings and the environment a
production deploy sets: no warning but the ones the README justifies."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# README, "Access and hardening": HSTS preload is the domain owner's commitment, opt-in.
JUSTIFIED = {"security.W021"}

# What docker-compose.yml and the README's deploy section set, behind TLS.
PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DATABASE_URL": "postgres://sdr:sdr@postgres:5432/sdr",
    # A broker that answers: `check --deploy` pings the configured one.
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "Q_BROKER": "redis",
    "ALLOWED_HOSTS": "sdr.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://sdr.example.com",
    "LOG_FORMAT": "json",
    "METRICS_TOKEN": secrets.token_urlsafe(32),
    "TRUSTED_PROXY_COUNT": "1",
}


def _check_deploy(env: dict[str, str]) -> tuple[int, set[str], str]:
    # A clean environment: nothing from the developer's shell or .env leaks in.
    base = {"PATH": os.environ["PATH"]}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=base
        | {"SECRET_KEY": secrets.token_urlsafe(50), "SALT_KEY": secrets.token_urlsafe(24)}
        | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    return result.returncode, set(re.findall(r"\(([\w.]+\.[EW]\d{3})\)", output)), output


@pytest.mark.slow
def test_check_deploy_passes_with_production_settings():
    code, issues, output = _check_deploy(PRODUCTION_ENV)

    assert code == 0, output
    assert issues <= JUSTIFIED, output


@pytest.mark.slow
def test_check_deploy_warns_when_metrics_are_public():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "METRICS_TOKEN"}

    code, issues, output = _check_deploy(env)

    assert code == 0, output
    assert "core.W001" in issues, output
