"""The platform's own system checks (`manage.py check`, `check --deploy`).

Cheap ones run on every command: an active chip without the credentials its
provider needs to send, a malformed /metrics allow-list; with --deploy, a
/metrics open to anyone. The ones that call out (broker ping, Slack, Chatwoot,
the LLM server) run only with --deploy, where a configured-but-refusing
integration is what a deploy must catch.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import httpx
from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import DatabaseError

# What each provider needs to send (the fields its adapter reads); sandbox needs nothing.
SEND_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "meta": ("instance_id", "api_token", "app_secret"),
    "evolution": ("api_base_url", "instance_id", "api_token"),
    "zapi": ("instance_id", "api_token"),
    "wapi": ("instance_id", "api_token"),
    "sandbox": (),
}
ACTIVE_STATUSES = ("connected", "pending")
TIMEOUT = httpx.Timeout(5.0)


@register()
def metrics_allow_list_is_valid(**kwargs: Any) -> list[Error]:
    errors = []
    for entry in settings.METRICS_ALLOWED_IPS:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            errors.append(
                Error(
                    f"METRICS_ALLOWED_IPS has {entry!r}, which is not an address or network.",
                    hint="Use addresses or CIDR networks, comma-separated: 10.0.0.0/8,127.0.0.1",
                    id="core.E001",
                )
            )
    return errors


@register(Tags.security, deploy=True)
def metrics_are_protected(**kwargs: Any) -> list[Warning]:
    if settings.METRICS_TOKEN or settings.METRICS_ALLOWED_IPS:
        return []
    return [
        Warning(
            "/metrics is open to anyone: neither METRICS_TOKEN nor METRICS_ALLOWED_IPS is set.",
            hint="Set METRICS_TOKEN (Prometheus sends it as a bearer token) and/or "
            "METRICS_ALLOWED_IPS (the Prometheus servers' addresses).",
            id="core.W001",
        )
    ]


@register(Tags.database, "sdr")
def check_chip_credentials(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list:
    if not databases or "default" not in databases:
        return []
    Chip = apps.get_model("channels", "Chip")
    errors = []
    try:
        chips = list(Chip.objects.filter(status__in=ACTIVE_STATUSES))
    except DatabaseError:
        return []  # not migrated yet: Django's own checks say so
    for chip in chips:
        missing = [
            name for name in SEND_CREDENTIALS.get(chip.provider, ()) if not getattr(chip, name)
        ]
        if missing:
            # A warning, not an error: `migrate` runs database checks too, and one
            # misconfigured number must not block a deploy.
            errors.append(
                Warning(
                    f"Chip {chip.name!r} ({chip.provider}) is active but has no "
                    f"{', '.join(missing)}.",
                    hint="Fill them on the chip's admin page, or mark the chip disconnected.",
                    obj=f"channels.Chip#{chip.pk}",
                    id="sdr.W001",
                )
            )
    return errors


@register("sdr", deploy=True)
def check_integrations_answer(app_configs: Any = None, **kwargs: Any) -> list:
    """Each configured integration is reachable and accepts our credentials."""
    problems: list[Warning | Error] = []
    if settings.Q_BROKER == "redis":
        import redis

        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3).ping()
        except redis.RedisError as exc:
            problems.append(
                Error(
                    f"Broker unreachable: {type(exc).__name__}",
                    hint="Check REDIS_URL.",
                    id="sdr.E002",
                )
            )
    if settings.SLACK_WEBHOOK_URL:
        # Slack answers an empty payload with 400 "no_text" when the hook exists,
        # 403/404 when it was revoked: a probe that posts nothing to the channel.
        status = _status("POST", settings.SLACK_WEBHOOK_URL, json={})
        if status not in (400,):
            problems.append(_refusing("Slack", "SLACK_WEBHOOK_URL", status, "sdr.W003"))
    if settings.CHATWOOT_URL and settings.CHATWOOT_API_TOKEN:
        url = f"{settings.CHATWOOT_URL.rstrip('/')}/api/v1/profile"
        status = _status("GET", url, headers={"api_access_token": settings.CHATWOOT_API_TOKEN})
        if status != 200:
            problems.append(
                _refusing("Chatwoot", "CHATWOOT_URL/CHATWOOT_API_TOKEN", status, "sdr.W004")
            )
    if settings.OPENAI_API_KEY:
        base = (settings.OPENAI_BASE_URL or "https://api.openai.com/v1").rstrip("/")
        status = _status(
            "GET", f"{base}/models", headers={"Authorization": f"Bearer {settings.OPENAI_API_KEY}"}
        )
        if status != 200:
            problems.append(_refusing("LLM", "OPENAI_BASE_URL/OPENAI_API_KEY", status, "sdr.W005"))
    return problems


def _status(method: str, url: str, **kwargs: Any) -> int | None:
    try:
        return httpx.request(method, url, timeout=TIMEOUT, **kwargs).status_code
    except httpx.HTTPError:
        return None


def _refusing(name: str, setting: str, status: int | None, check_id: str) -> Warning:
    # Never the URL or token: both are credentials.
    answer = "no answer" if status is None else f"HTTP {status}"
    return Warning(
        f"{name} is configured but refuses: {answer}.",
        hint=f"Check {setting}.",
        id=check_id,
    )
