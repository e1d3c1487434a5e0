"""Settings shared by every environment.

Every knob is read from the environment through django-environ; `.env.example`
lists them with their defaults. `local`, `test` and `production` only adjust.
"""

from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
env_file = BASE_DIR / ".env"
if env_file.exists():
    environ.Env.read_env(env_file)

SECRET_KEY = env("SECRET_KEY", default="django-insecure-local-only-change-me")
# Old keys still accepted (sessions, and decrypting chip credentials) after a rotation.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
# Chip credentials are encrypted at rest (core.fields.SecretField) with a key
# derived from SECRET_KEY and this salt; more entries (comma-separated) still
# decrypt, the first one encrypts. Production refuses the default.
SALT_KEY = env.list("SALT_KEY", default=["sdr-ops-local-salt-not-for-production"])
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # django.contrib.admin with the operations dashboard as its home page.
    "core.apps.OpsAdminConfig",
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
    "axes",
    "core",
    "channels",
    "conversations",
    "campaigns",
    "agent",
]

MIDDLEWARE = [
    # The provider webhooks leave here, through WEBHOOK_MIDDLEWARE (channels/middleware.py).
    "channels.middleware.WebhookMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.http_metrics.PrometheusAfterMiddleware",
    # Last, as django-axes asks: it turns a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# What a provider webhook goes through instead of MIDDLEWARE: the HTTPS
# redirect and security headers, the host check and Content-Length, the frame
# header. WebhookMiddleware records django-prometheus' series itself.
WEBHOOK_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
# PostgreSQL: values bound by the server, and psycopg's automatic prepared
# statements (a query a connection runs a fifth time is prepared). Each task
# and request runs the same few dozen queries with other values, so
# PostgreSQL stops parsing and planning them again: it halved the database's
# CPU per answered lead (bench/README.md, "prepared statements"). Turn it off
# (DATABASE_PREPARED_STATEMENTS=False) behind a pooler in transaction mode
# that does not keep a session's prepared statements (PgBouncer before 1.21,
# or without max_prepared_statements).
POSTGRES_PREPARED = {"server_side_binding": True, "prepare_threshold": 5}
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
    if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
        DATABASES["default"]["OPTIONS"].update(POSTGRES_PREPARED)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-axes counts failed logins before Django checks the password.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Locale -------------------------------------------------------------------
# Code holds English msgids; locale/pt_BR holds the Portuguese users read.
# `make install` and the Docker build compile it (compilemessages); `make messages`
# refreshes it from the code. LANGUAGE_CODE=en-us shows the English texts.
LANGUAGE_CODE = env("LANGUAGE_CODE", default="pt-br")
LOCALE_PATHS = [BASE_DIR / "locale"]
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

# Two django-q2 clusters on one broker, so a slow dependency never delays
# what must stay fast. The default cluster (Q_NAME) runs webhook processing,
# statuses, sends and the periodic chores; the agent's cluster (Q_NAME-agent,
# started with `Q_CLUSTER_NAME=<Q_NAME>-agent manage.py qcluster`, django-q2's
# ALT_CLUSTERS) runs the agent's turns, whose LLM call may take a minute: a
# hanging model can hold every agent worker and nothing else. Q_NAME is the
# site's name, the same for both (it signs the task packages); django-q2
# itself reads Q_CLUSTER_NAME to know which cluster a process runs.
Q_NAME = env("Q_NAME", default="sdr")
Q_AGENT_CLUSTER = f"{Q_NAME}-agent"
Q_CLUSTER = {
    "name": Q_NAME,
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
    # Successful tasks kept for the admin's task list. Keeping them costs the
    # cluster's monitor a SELECT … FOR UPDATE of every kept row per task (45 ms
    # at 1,000 rows: the monitor alone capped a cluster near 20 tasks/s), so
    # the hot-path tasks (webhook processing, agent turns, outbox kicks,
    # Chatwoot mirroring) are enqueued with save=False: their own rows
    # (WebhookEvent, AgentRun, Message, ChatwootMirror) are their record.
    # Schedules and ops' actions are kept; failures always are.
    "save_limit": 1000,
    "label": "Tarefas (django-q2)",
    # ORM broker: how long an idle pusher sleeps between looks at the queue.
    # A lead's answer crosses four tasks (webhook, turn, resumed turn, send),
    # each waiting half a poll on average: 0.1 s keeps that near 0.2 s in all,
    # for about ten cheap queries a second per cluster. Redis blocks instead.
    "poll": env.float("Q_POLL", default=0.1),
    "ALT_CLUSTERS": {
        Q_AGENT_CLUSTER: {
            # Turns mostly wait on the model: more workers than cores is fine.
            "workers": env.int("Q_AGENT_WORKERS", default=4),
        },
    },
}
if Q_BROKER == "redis":
    Q_CLUSTER["redis"] = REDIS_URL
    # One connection pool per process instead of a new connection per task.
    Q_CLUSTER["broker_class"] = "core.brokers.PooledRedis"
else:
    Q_CLUSTER["orm"] = "default"
    # Tasks handed out in the order they became due (core/brokers.py).
    Q_CLUSTER["broker_class"] = "core.brokers.OrderedORM"

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
# The Chatwoot webhook's URL is /webhooks/chatwoot/<CHATWOOT_WEBHOOK_TOKEN>/ (older
# Chatwoot signs nothing: the secret URL is the authentication); recent versions
# also sign with the webhook's secret, checked when CHATWOOT_WEBHOOK_SECRET is set.
CHATWOOT_WEBHOOK_TOKEN = env("CHATWOOT_WEBHOOK_TOKEN", default="")
CHATWOOT_WEBHOOK_SECRET = env("CHATWOOT_WEBHOOK_SECRET", default="")
# Signed deliveries older (or newer) than this are refused as replays.
CHATWOOT_WEBHOOK_MAX_AGE_SECONDS = env.int("CHATWOOT_WEBHOOK_MAX_AGE_SECONDS", default=300)
# A Chatwoot label that hands the conversation to a human while it is set.
CHATWOOT_HANDOFF_LABEL = env("CHATWOOT_HANDOFF_LABEL", default="humano")
# Mirroring into Chatwoot (on when CHATWOOT_URL, _API_TOKEN, _ACCOUNT_ID and _INBOX_ID
# are set): each call waits at most CHATWOOT_TIMEOUT_SECONDS; a failure backs off
# from CHATWOOT_RETRY_BASE_SECONDS doubling up to CHATWOOT_RETRY_MAX_SECONDS, and
# while it does, only that one write probes Chatwoot (no worker piles up on it).
CHATWOOT_TIMEOUT_SECONDS = env.float("CHATWOOT_TIMEOUT_SECONDS", default=5.0)
CHATWOOT_RETRY_BASE_SECONDS = env.int("CHATWOOT_RETRY_BASE_SECONDS", default=10)
CHATWOOT_RETRY_MAX_SECONDS = env.int("CHATWOOT_RETRY_MAX_SECONDS", default=600)
# How long one sweep run mirrors before it leaves the rest to the next run.
CHATWOOT_MIRROR_DRAIN_SECONDS = env.int("CHATWOOT_MIRROR_DRAIN_SECONDS", default=20)
# /health says degraded when the oldest write waiting for Chatwoot is older than this.
CHATWOOT_MIRROR_BACKLOG_WARN_SECONDS = env.int("CHATWOOT_MIRROR_BACKLOG_WARN_SECONDS", default=300)
# Optional: an agent bot of the account; the agent's replies are then posted as its messages.
CHATWOOT_AGENT_BOT_ID = env("CHATWOOT_AGENT_BOT_ID", default="")
# Public base URL of this platform, for links in notifications (Slack).
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", default="")

# --- Handoff (conversations/ownership.py) --------------------------------------------
# A human takeover with no human message for this long returns to the agent
# (every human message extends it). 0: a takeover lasts until given back.
HUMAN_TAKEOVER_QUIET_MINUTES = env.int("HUMAN_TAKEOVER_QUIET_MINUTES", default=0)
# A handoff nobody took within this long is notified again (0: never).
HANDOFF_REMIND_MINUTES = env.int("HANDOFF_REMIND_MINUTES", default=10)

# --- Operations -------------------------------------------------------------------------
# Provider webhooks larger than this are refused with 413 (Meta batches stay well below).
# The webhook sweep re-queues an event whose task a worker took up and did not
# finish within this time (longer than the worker's own database retries), or
# whose task no worker took up within WEBHOOK_TASK_LOST_SECONDS (the broker
# lost it); never one still waiting in a backlog.
WEBHOOK_CLAIM_STALE_SECONDS = env.int("WEBHOOK_CLAIM_STALE_SECONDS", default=45)
WEBHOOK_TASK_LOST_SECONDS = env.int("WEBHOOK_TASK_LOST_SECONDS", default=300)
# With the Redis broker a webhook's task is pushed by a thread of the web
# process (core/task_relay.py): at once after a quiet spell, and under load
# one RPUSH per this long with the tasks of the deliveries answered
# meanwhile. Longer batches more (each of the thread's wakes costs more CPU
# than a package: 5 ms cost intake about a tenth of its throughput); a task
# reaches its queue at most this much later.
TASK_PUSH_LINGER_SECONDS = env.float("TASK_PUSH_LINGER_SECONDS", default=0.02)
# Waits between tries of a worker's transaction after a deadlock, a lock
# timeout or a lost connection (about 30 s in all: a database restart passes).
DB_TRANSIENT_RETRY_SECONDS = env.list(
    "DB_TRANSIENT_RETRY_SECONDS", cast=float, default=[0.05, 0.2, 1, 2, 4, 8, 15]
)
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=1024 * 1024)
# JSON nested deeper than this is refused with 400 (real payloads nest under 15 levels).
WEBHOOK_MAX_JSON_DEPTH = env.int("WEBHOOK_MAX_JSON_DEPTH", default=64)
# Per-chip intake limits (channels/intake_limits.py): past them the webhook answers
# 429 with Retry-After and the provider delivers again later. Far above a real
# chip's traffic (a busy chip sends a few deliveries per second, ~2 KiB each);
# 0 turns a limit off.
WEBHOOK_RATE_LIMIT_PER_MINUTE = env.int("WEBHOOK_RATE_LIMIT_PER_MINUTE", default=3000)
WEBHOOK_STORAGE_BUDGET_BYTES_PER_HOUR = env.int(
    "WEBHOOK_STORAGE_BUDGET_BYTES_PER_HOUR", default=256 * 1024 * 1024
)
# Where the counters live: "redis" (shared by every web process) or "memory"
# (per process). Redis by default when it is the broker.
WEBHOOK_LIMIT_BACKEND = env(
    "WEBHOOK_LIMIT_BACKEND", default="redis" if Q_BROKER == "redis" else "memory"
)
if WEBHOOK_LIMIT_BACKEND not in {"memory", "redis"}:
    raise environ.ImproperlyConfigured("WEBHOOK_LIMIT_BACKEND must be 'memory' or 'redis'")
# A web process reuses a chip it read for this long (channels/chip_cache.py): a change
# made in another process reaches its webhooks within these seconds.
WEBHOOK_CHIP_CACHE_SECONDS = env.float("WEBHOOK_CHIP_CACHE_SECONDS", default=5.0)
# Metric counters are buffered per process and written at most this often (core/metrics.py).
METRICS_FLUSH_SECONDS = env.float("METRICS_FLUSH_SECONDS", default=5.0)
# /health calls the worker "stale" past this age; the heartbeat beats every 30 s.
HEARTBEAT_STALE_SECONDS = env.int("HEARTBEAT_STALE_SECONDS", default=120)
# /health calls the outbox "backlogged" when a due message waited longer than this.
OUTBOX_BACKLOG_WARN_SECONDS = env.int("OUTBOX_BACKLOG_WARN_SECONDS", default=15 * 60)

# --- Dashboard and alerts (core/dashboard.py, core/alerts.py) -------------------------
# Defaults are the seeds' own numbers (incident report and runbooks).
DASHBOARD_REFRESH_SECONDS = env.int("DASHBOARD_REFRESH_SECONDS", default=30)
# Alerts are evaluated every minute by the worker; the web process also checks
# the heartbeat (a dead worker cannot report itself) at most this often.
ALERT_WEB_CHECK_SECONDS = env.int("ALERT_WEB_CHECK_SECONDS", default=60)
# "fila_mensagens.pendente > 50 por mais de 30 minutos"
ALERT_OUTBOX_BACKLOG_COUNT = env.int("ALERT_OUTBOX_BACKLOG_COUNT", default=50)
ALERT_OUTBOX_BACKLOG_MINUTES = env.int("ALERT_OUTBOX_BACKLOG_MINUTES", default=30)
# Worker heartbeat older than HEARTBEAT_STALE_SECONDS (2 min) opens an alert.
# "taxa de erro > 10%" over 15 minutes, once at least MIN_EVENTS happened.
ALERT_ERROR_RATE = env.float("ALERT_ERROR_RATE", default=0.10)
ALERT_ERROR_RATE_MINUTES = env.int("ALERT_ERROR_RATE_MINUTES", default=15)
ALERT_ERROR_RATE_MIN_EVENTS = env.int("ALERT_ERROR_RATE_MIN_EVENTS", default=10)
# "Sem respostas: 0 mensagens em 30min", in business hours (TIME_ZONE), weekdays 0=Mon.
ALERT_NO_RESPONSES_MINUTES = env.int("ALERT_NO_RESPONSES_MINUTES", default=30)
ALERT_BUSINESS_HOURS = env("ALERT_BUSINESS_HOURS", default="08:00-18:00")
ALERT_BUSINESS_DAYS = env.list("ALERT_BUSINESS_DAYS", cast=int, default=[0, 1, 2, 3, 4])
# "Taxa de handoff alta: > 20%", over conversations where a lead wrote in the window.
ALERT_HANDOFF_RATE = env.float("ALERT_HANDOFF_RATE", default=0.20)
ALERT_HANDOFF_MINUTES = env.int("ALERT_HANDOFF_MINUTES", default=60)
ALERT_HANDOFF_MIN_CONVERSATIONS = env.int("ALERT_HANDOFF_MIN_CONVERSATIONS", default=10)
# "Tempo de resposta < 10s (aceitável)": p95 of the agent's replies over the window.
ALERT_AGENT_P95_SECONDS = env.float("ALERT_AGENT_P95_SECONDS", default=10.0)
ALERT_AGENT_WINDOW_MINUTES = env.int("ALERT_AGENT_WINDOW_MINUTES", default=60)
ALERT_AGENT_MIN_REPLIES = env.int("ALERT_AGENT_MIN_REPLIES", default=5)

# --- Retention (conversations/retention.py) ---------------------------------------------
# The runbook's cleanup: conversations and messages after 90 days, the sent
# queue (delivery attempts of sent messages) and webhook events after 30.
RETENTION_MESSAGES_DAYS = env.int("RETENTION_MESSAGES_DAYS", default=90)
RETENTION_SENT_OUTBOX_DAYS = env.int("RETENTION_SENT_OUTBOX_DAYS", default=30)
RETENTION_WEBHOOK_EVENTS_DAYS = env.int("RETENTION_WEBHOOK_EVENTS_DAYS", default=30)
# Rows deleted per transaction: keeps each lock short on the busiest tables.
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=2000)

# Provider API URLs (chip.api_base_url) must resolve to public addresses; True
# allows private, loopback and link-local ones (a self-hosted Evolution on the
# private network, the local fake servers of tests and `make run`). See
# channels/provider_urls.py.
PROVIDER_ALLOW_PRIVATE_URLS = env.bool("PROVIDER_ALLOW_PRIVATE_URLS", default=False)

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
# Replies to a lead who wrote skip the chip's campaign interval. A chip sends
# at most this many of them per minute (a flood ceiling, not a pace: a burst up
# to it goes at once). Meta allows 80 messages per second per number.
OUTBOX_REPLY_MAX_PER_MINUTE = env.int("OUTBOX_REPLY_MAX_PER_MINUTE", default=300)
# Live messages (replies, system, human) of one chip claimed together and sent
# one after another by one worker: a chip answering many leads at once pays
# its lock and due query once per batch. 1 claims one message at a time.
OUTBOX_REPLY_BATCH = env.int("OUTBOX_REPLY_BATCH", default=10)
# The gap before the next part of a multi-part reply, as if typed: this many
# seconds per character of that part, within the bounds.
OUTBOX_REPLY_GAP_SECONDS_PER_CHAR = env.float("OUTBOX_REPLY_GAP_SECONDS_PER_CHAR", default=0.03)
OUTBOX_REPLY_GAP_MIN_SECONDS = env.float("OUTBOX_REPLY_GAP_MIN_SECONDS", default=0.8)
OUTBOX_REPLY_GAP_MAX_SECONDS = env.float("OUTBOX_REPLY_GAP_MAX_SECONDS", default=3.0)
# "digitando…" when a turn starts (conversations/presence.py): best effort,
# bounded so a slow provider never holds the turn.
PRESENCE_TIMEOUT_SECONDS = env.float("PRESENCE_TIMEOUT_SECONDS", default=2.0)
# Per-chip circuit breaker: opens after this many consecutive failures, then
# lets one probe through after base, 2*base, 4*base ... seconds, capped.
CIRCUIT_FAILURE_THRESHOLD = env.int("CIRCUIT_FAILURE_THRESHOLD", default=5)
CIRCUIT_BACKOFF_BASE_SECONDS = env.float("CIRCUIT_BACKOFF_BASE_SECONDS", default=5 * 60.0)
CIRCUIT_BACKOFF_MAX_SECONDS = env.float("CIRCUIT_BACKOFF_MAX_SECONDS", default=4 * 60 * 60.0)

# --- Campaigns (campaigns/) ---------------------------------------------------------------
# A lead contacted by another campaign this recently is skipped (the reason is counted).
CAMPAIGN_RECONTACT_DAYS = env.int("CAMPAIGN_RECONTACT_DAYS", default=7)
# Auto-pause: once a campaign has this many settled sends, it pauses when the
# share of failures among its latest ones passes CAMPAIGN_FAILURE_RATE.
CAMPAIGN_FAILURE_WINDOW = env.int("CAMPAIGN_FAILURE_WINDOW", default=20)
CAMPAIGN_FAILURE_RATE = env.float("CAMPAIGN_FAILURE_RATE", default=0.5)
# A start or resume from the admin with more pending recipients than this is
# queued by a worker, not in the request (gunicorn's timeout is 30 s). A start
# writes CAMPAIGN_QUEUE_AHEAD messages per chip but runs the skip rules over
# the whole audience: about 0.6 s per 100,000 recipients on 2 idle cores.
CAMPAIGN_START_INLINE_MAX = env.int("CAMPAIGN_START_INLINE_MAX", default=200_000)
# First messages a running campaign keeps written and queued per usable pool
# chip; the rest of the audience waits as pending recipients and is queued by
# the scheduler's tick as the chips send. At the default 30 s interval a chip
# sends 120 an hour, so 500 is hours ahead of the minute-long tick, and a
# 100,000-lead start writes a few thousand messages instead of 100,000
# (and no empty conversation for a lead the pool will reach next week).
CAMPAIGN_QUEUE_AHEAD = env.int("CAMPAIGN_QUEUE_AHEAD", default=500)

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
# The turn is planned (model included) while the window runs and applied when
# it ends if nothing changed (agent/plan_ahead.py): the answer leaves as the
# window ends instead of queueing for the model then. Costs one model call per
# message that restarts the window; False plans only once the lead is quiet.
AGENT_PLAN_DURING_WINDOW = env.bool("AGENT_PLAN_DURING_WINDOW", default=True)
# A plain plan (replies, a flow step) is also applied during the window, its
# replies held until it ends (agent/held_turn.py): the window's end only
# releases them, and withdraws the turn if the conversation changed meanwhile.
# False applies every plan when the window ends.
AGENT_APPLY_DURING_WINDOW = env.bool("AGENT_APPLY_DURING_WINDOW", default=True)
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
# While the agent's queue has a line and its cluster is alive, a message no
# turn has taken up yet is waiting in that line, not lost: the recovery leaves
# it to its own task until it is this old (a flood answered at a few leads a
# second takes minutes; a task the broker really dropped waits this long).
AGENT_TASK_LOST_SECONDS = env.int("AGENT_TASK_LOST_SECONDS", default=10 * 60)
# Used when a conversation has no agent profile (neither its own, its campaign's nor its chip's).
# Empty: agent.models.SYSTEM_PROMPT in LANGUAGE_CODE (the pt_BR catalog holds the Portuguese one).
AGENT_DEFAULT_SYSTEM_PROMPT = env("AGENT_DEFAULT_SYSTEM_PROMPT", default="")

# --- Access control ------------------------------------------------------------------
# Reverse proxies in front of the web process whose X-Forwarded-For we trust
# (core/client_ip.py). 0: the header is ignored and REMOTE_ADDR is the client.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# /metrics: a bearer token and/or an allow-list of addresses or CIDR networks.
# With both set a scrape needs both; with neither /metrics is open (fine on a
# laptop; `check --deploy` warns).
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=[])
# Admin login lockout (django-axes): after AXES_FAILURE_LIMIT failed logins
# for one username from one address, that pair is refused for the cool-off
# time. Locking the pair, not the username alone, keeps a stranger from
# locking a real operator out; locking it, not the address alone, keeps an
# office behind one NAT working when one person mistypes.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "core.client_ip.client_ip"
AXES_LOCKOUT_CALLABLE = "core.lockout.lockout_response"

# --- Logging ----------------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT = env("LOG_FORMAT", default="text")
# Every handler redacts secrets (core/logging.py); records are redacted when
# made as well, so a library's own handler cannot print a chip key either.
LOGGING_CONFIG = "core.logging.configure_logging"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_secrets": {"()": "core.logging.RedactSecretsFilter"},
        "quiet_task_lines": {"()": "core.logging.QuietTaskLinesFilter"},
    },
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "core.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
            "filters": ["redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Configured here, so Django's default handlers on it are dropped: with
        # DEBUG they printed every 4xx/5xx a second time, unformatted.
        "django": {"level": "INFO"},
        "django.db.backends": {"level": "INFO"},
        # runserver's request lines (bin/run-dev): through our redacting handler,
        # not Django's default one.
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Its per-task lines (every periodic run) at DEBUG: an idle platform logs nothing.
        "django-q": {"level": LOG_LEVEL, "propagate": True, "filters": ["quiet_task_lines"]},
        # httpx logs every request line at INFO, with the Z-API token in its
        # path and Slack's URL; only their warnings are worth a line.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
