"""Settings shared by every environment.

Every knob is read from the environment through django-environ; `.env.example`
lists them with their defaults. `local`, `test` and `production` only adjust.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
env_file = BASE_DIR / ".env"
if env_file.exists():
    environ.Env.read_env(env_file)

SECRET_KEY = env("SECRET_KEY", default="django-insecure-local-only-change-me")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_q",
    "django_prometheus",
    "core",
    "channels",
    "conversations",
    "campaigns",
    "agent",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
# Unset DATABASE_URL means a SQLite file: the zero-setup default for `make run`.
# Production and the test suite use PostgreSQL through psycopg 3.
SQLITE_PATH = BASE_DIR / "db.sqlite3"
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{SQLITE_PATH}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the qcluster write concurrently: WAL plus IMMEDIATE
    # transactions turn "database is locked" errors into short waits.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 5)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Locale -------------------------------------------------------------------
LANGUAGE_CODE = env("LANGUAGE_CODE", default="pt-br")
TIME_ZONE = env("TIME_ZONE", default="America/Sao_Paulo")
USE_I18N = True
USE_TZ = True

# --- Static files (whitenoise) ---------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Redis and django-q2 ------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
Q_BROKER = env("Q_BROKER", default="orm")
if Q_BROKER not in {"orm", "redis"}:
    raise environ.ImproperlyConfigured("Q_BROKER must be 'orm' or 'redis'")

Q_CLUSTER = {
    "name": env("Q_CLUSTER_NAME", default="sdr"),
    "workers": env.int("Q_WORKERS", default=2),
    "recycle": 500,
    # A task may run for `timeout` seconds; the broker hands it to another
    # worker only after `retry` seconds. timeout < retry, or a slow task runs
    # twice at once (django-q2's best-known pitfall).
    "timeout": env.int("Q_TIMEOUT", default=120),
    "retry": env.int("Q_RETRY", default=180),
    # A task that keeps crashing its worker is given up after a few tries; the
    # database rows (webhook events, outbox) stay the unit of work and are
    # picked up again by the periodic sweeps.
    "max_attempts": 3,
    "ack_failures": True,
    # A cluster that was down must not replay every missed periodic run at once.
    "catch_up": False,
    "save_limit": 1000,
    "label": "Tarefas (django-q2)",
    "poll": 0.5,
}
if Q_BROKER == "redis":
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- REST framework ---------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "SDR Ops webhook API",
    "DESCRIPTION": "Provider webhooks received by the WhatsApp SDR operations platform.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Integrations -------------------------------------------------------------------
OPENAI_API_KEY = env("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env("OPENAI_BASE_URL", default="")
OPENAI_MODEL = env("OPENAI_MODEL", default="gpt-4o-mini")
CHATWOOT_URL = env("CHATWOOT_URL", default="")
CHATWOOT_API_TOKEN = env("CHATWOOT_API_TOKEN", default="")
CHATWOOT_ACCOUNT_ID = env("CHATWOOT_ACCOUNT_ID", default="")
CHATWOOT_INBOX_ID = env("CHATWOOT_INBOX_ID", default="")
SLACK_WEBHOOK_URL = env("SLACK_WEBHOOK_URL", default="")

# --- Operations -------------------------------------------------------------------------
# Provider webhooks larger than this are refused with 413 (Meta batches stay well below).
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=1024 * 1024)
# /health calls the worker "stale" past this age; the heartbeat beats every 30 s.
HEARTBEAT_STALE_SECONDS = env.int("HEARTBEAT_STALE_SECONDS", default=120)
# /health calls the outbox "backlogged" when a due message waited longer than this.
OUTBOX_BACKLOG_WARN_SECONDS = env.int("OUTBOX_BACKLOG_WARN_SECONDS", default=15 * 60)

# --- Outbox (conversations/outbox.py) --------------------------------------------------
# How long a claimed message may stay `sending` before another worker takes it
# back. It must exceed the HTTP timeout below, or a slow send could be sent twice.
OUTBOX_LEASE_SECONDS = env.int("OUTBOX_LEASE_SECONDS", default=90)
OUTBOX_HTTP_TIMEOUT_SECONDS = env.float("OUTBOX_HTTP_TIMEOUT_SECONDS", default=20.0)
OUTBOX_HTTP_CONNECT_TIMEOUT_SECONDS = env.float("OUTBOX_HTTP_CONNECT_TIMEOUT_SECONDS", default=5.0)
# A transient failure is retried this many times in total, then the message fails.
OUTBOX_MAX_ATTEMPTS = env.int("OUTBOX_MAX_ATTEMPTS", default=5)
# Retry backoff: base * 2**(attempt-1), capped.
OUTBOX_RETRY_BASE_SECONDS = env.float("OUTBOX_RETRY_BASE_SECONDS", default=30.0)
OUTBOX_RETRY_MAX_SECONDS = env.float("OUTBOX_RETRY_MAX_SECONDS", default=30 * 60.0)
# A message that may not leave yet (campaign paused, chip may not prospect) is
# looked at again after this long.
OUTBOX_HOLD_SECONDS = env.int("OUTBOX_HOLD_SECONDS", default=5 * 60)
# One sender task keeps draining (waiting for paced chips) for at most this
# long; it must stay well below Q_CLUSTER["timeout"].
OUTBOX_DRAIN_SECONDS = env.float("OUTBOX_DRAIN_SECONDS", default=25.0)
# Per-chip circuit breaker: opens after this many consecutive failures, then
# lets one probe through after base, 2*base, 4*base ... seconds, capped.
CIRCUIT_FAILURE_THRESHOLD = env.int("CIRCUIT_FAILURE_THRESHOLD", default=5)
CIRCUIT_BACKOFF_BASE_SECONDS = env.float("CIRCUIT_BACKOFF_BASE_SECONDS", default=5 * 60.0)
CIRCUIT_BACKOFF_MAX_SECONDS = env.float("CIRCUIT_BACKOFF_MAX_SECONDS", default=4 * 60 * 60.0)

# --- Agent (agent/) ----------------------------------------------------------------------
# Without OPENAI_API_KEY the agent runs scripted flows and fallbacks only.
# Each model request may take this long; timeouts, 429s and 5xx are retried
# (OPENAI_MAX_ATTEMPTS in total) with exponential backoff from
# OPENAI_RETRY_BASE_SECONDS, capped, honouring Retry-After up to the cap.
OPENAI_TIMEOUT_SECONDS = env.float("OPENAI_TIMEOUT_SECONDS", default=20.0)
OPENAI_MAX_ATTEMPTS = env.int("OPENAI_MAX_ATTEMPTS", default=3)
OPENAI_RETRY_BASE_SECONDS = env.float("OPENAI_RETRY_BASE_SECONDS", default=1.0)
OPENAI_RETRY_MAX_SECONDS = env.float("OPENAI_RETRY_MAX_SECONDS", default=10.0)
# Leads write in bursts ("oi" / "tudo bem?" / "queria saber o preço"): the
# agent waits until the lead has been quiet this long and answers them all at
# once, but never waits longer than AGENT_BURST_MAX_WAIT_SECONDS in total.
AGENT_BURST_WINDOW_SECONDS = env.float("AGENT_BURST_WINDOW_SECONDS", default=4.0)
AGENT_BURST_MAX_WAIT_SECONDS = env.float("AGENT_BURST_MAX_WAIT_SECONDS", default=15.0)
# One worker answers a conversation at a time; a dead worker's claim expires
# after this long. Must exceed Q_CLUSTER["timeout"] (a live task never loses it).
AGENT_LEASE_SECONDS = env.int("AGENT_LEASE_SECONDS", default=150)
# Replies are split into WhatsApp-sized messages of at most this many characters.
AGENT_REPLY_MAX_CHARS = env.int("AGENT_REPLY_MAX_CHARS", default=700)
AGENT_REPLY_MAX_PARTS = env.int("AGENT_REPLY_MAX_PARTS", default=4)
# Stuck-conversation recovery: the lead's last message unanswered for longer
# than MIN (normal processing is over) and less than MAX (older is stale).
AGENT_RECOVERY_MIN_AGE_SECONDS = env.int("AGENT_RECOVERY_MIN_AGE_SECONDS", default=120)
AGENT_RECOVERY_MAX_AGE_SECONDS = env.int("AGENT_RECOVERY_MAX_AGE_SECONDS", default=30 * 60)
# Used when a conversation has no agent profile (neither its own, its campaign's nor its chip's).
AGENT_DEFAULT_SYSTEM_PROMPT = env(
    "AGENT_DEFAULT_SYSTEM_PROMPT",
    default=(
        "Você é um SDR (pré-vendedor) atencioso que conversa pelo WhatsApp. Responda sempre em "
        "português do Brasil, com mensagens curtas e naturais, uma pergunta por vez. Qualifique "
        "o lead, tire dúvidas simples e, quando o lead pedir uma pessoa ou o assunto fugir do "
        "seu alcance, use a ferramenta request_handoff."
    ),
)

# --- Logging ----------------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT = env("LOG_FORMAT", default="text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "core.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django-q": {"level": LOG_LEVEL, "propagate": True},
    },
}
