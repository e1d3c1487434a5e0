"""Log formatting and the redaction every log line goes through.

No secret may reach a log line: chip keys in webhook paths, tokens in query
strings and headers, the Slack URL, API keys. Redaction happens twice:
when a record is made (a LogRecord factory, so every handler, ours or a
library's, only ever sees the redacted text) and again in the filter
installed on every handler we configure (gunicorn's access log included,
whose process may log before Django has set the factory up).

This module imports nothing of Django at import time: gunicorn's master
loads it before any Django setting exists.
"""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from core.redaction import text_redact

_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}
_MESSAGE_MARK = "_secrets_redacted"

# Settings whose values are secrets: searched for verbatim in every line.
SECRET_SETTINGS = (
    "SECRET_KEY",
    "SALT_KEY",
    "SLACK_WEBHOOK_URL",
    "OPENAI_API_KEY",
    "CHATWOOT_API_TOKEN",
    "METRICS_TOKEN",
)


_known_secrets: list[str] | None = None


def known_secrets() -> list[str]:
    """The configured secret values, once Django settings exist (none before).

    Read once per process (every log line asks); `known_secrets_forget`
    drops them when a setting changes (tests).
    """
    global _known_secrets
    if _known_secrets is not None:
        return _known_secrets
    try:
        from django.conf import settings

        if not settings.configured:
            return []
        values: list[str] = []
        for name in SECRET_SETTINGS:
            value = getattr(settings, name, "")
            values.extend(value if isinstance(value, list | tuple) else [value])
        _known_secrets = [value for value in values if isinstance(value, str) and value]
        return _known_secrets
    except Exception:
        # A log line must never fail because settings cannot be read (yet).
        return []


def known_secrets_forget(**kwargs: Any) -> None:
    """Django's setting_changed receiver (core/apps.py)."""
    global _known_secrets
    _known_secrets = None


def _message_redact(record: logging.LogRecord, secrets: list[str]) -> None:
    """Redact the formatted message and the traceback (once per record)."""
    if getattr(record, _MESSAGE_MARK, False):
        return
    try:
        message = record.getMessage()
    except Exception:
        # A bad format string: logging reports it when the record is emitted.
        return
    redacted = text_redact(message, secrets)
    if redacted != message:
        record.msg, record.args = redacted, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = text_redact(record.exc_text, secrets)
    if record.stack_info:
        record.stack_info = text_redact(record.stack_info, secrets)
    setattr(record, _MESSAGE_MARK, True)


def record_redact(record: logging.LogRecord) -> logging.LogRecord:
    """Redact a record's message, traceback and string extras in place."""
    secrets = known_secrets()
    _message_redact(record, secrets)
    for key, value in list(record.__dict__.items()):
        if key not in _STANDARD_ATTRS and isinstance(value, str):
            record.__dict__[key] = text_redact(value, secrets)
    return record


class RedactSecretsFilter(logging.Filter):
    """Installed on every handler we configure; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record_redact(record)
        return True


class QuietTaskLinesFilter(logging.Filter):
    """django-q's per-task lines are DEBUG here, not INFO; its cluster's own lines stay INFO.

    django-q logs every task it enqueues, starts and finishes at INFO: with
    the periodic tasks (heartbeat, sweeps, alerts) an idle platform printed
    about 18 lines a minute, and real news (a failed task, the cluster
    starting or stopping) scrolled away among them. Tasks are kept in the
    database (admin, Tarefas) and failures are logged at ERROR, which this
    filter never touches; LOG_LEVEL=DEBUG shows the per-task lines again.
    Installed on the "django-q" logger, which is the only one django-q uses;
    the lines are told apart by the module that logs them, not by their text
    (django-q translates it).
    """

    # django_q/cluster.py: the cluster starting, running, recycling, stopping.
    LIFECYCLE_MODULES = frozenset({"cluster"})

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or record.module in self.LIFECYCLE_MODULES:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_base_factory: Callable[..., logging.LogRecord] | None = None


def install_record_factory() -> None:
    """Make every LogRecord redacted at birth, whoever logs it and wherever it goes.

    Extras (`extra=`) are set after the factory runs: the handler filter and
    the JSON formatter cover those.
    """
    global _base_factory
    if _base_factory is not None:
        return
    base = _base_factory = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        _message_redact(record, known_secrets())
        return record

    logging.setLogRecordFactory(factory)


def configure_logging(config: dict[str, Any]) -> None:
    """Django's LOGGING_CONFIG: the dict config plus redaction at record creation."""
    install_record_factory()
    logging.config.dictConfig(config)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with any `extra=` fields kept as keys.

    Log shippers (Loki, CloudWatch, Datadog) index these fields, which is what
    replaces the runbooks' `grep` on phone numbers. Every value is redacted:
    an extra such as Django's `request` prints its path, key and query string.
    """

    def format(self, record: logging.LogRecord) -> str:
        record_redact(record)
        secrets = known_secrets()
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info or record.exc_text:
            entry["exc_info"] = record.exc_text or self.formatException(record.exc_info)

        def safe(value: Any) -> str:
            return text_redact(str(value), secrets)

        line = json.dumps(entry, default=safe, ensure_ascii=False)
        return text_redact(line, secrets)
