"""gunicorn settings for the web container (read from the working directory).

The access log goes through the same secret redaction as Django's own log
lines: a webhook URL carries the chip's key in its path and Meta's handshake
its verify token in the query string (core/logging.py).
"""

import sys
from pathlib import Path

from gunicorn.glogging import Logger

sys.path.insert(0, str(Path(__file__).resolve().parent))

from core.logging import RedactSecretsFilter

wsgi_app = "config.wsgi:application"
bind = "0.0.0.0:8000"
workers = 3
timeout = 30
accesslog = "-"


class RedactingLogger(Logger):
    """gunicorn's logger with the redaction filter on its error and access handlers."""

    def setup(self, cfg) -> None:  # type: ignore[no-untyped-def]
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if not any(isinstance(f, RedactSecretsFilter) for f in handler.filters):
                    handler.addFilter(RedactSecretsFilter())


logger_class = RedactingLogger
