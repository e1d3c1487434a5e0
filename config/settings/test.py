"""Settings for the test suite: always PostgreSQL, like production."""

from .base import *  # noqa: F403
from .base import env

DEBUG = False
SECRET_KEY = "test-only-secret-key-not-for-production"  # noqa: S105
DATABASES = {
    "default": env.db("TEST_DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/sdr_ops")
}
# The same binding and prepared statements as production: a query the server
# cannot type without its values fails here, not in production.
DATABASES["default"]["OPTIONS"] = {"connect_timeout": 3, **POSTGRES_PREPARED}  # noqa: F405
# The fake provider servers listen on 127.0.0.1.
PROVIDER_ALLOW_PRIVATE_URLS = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"] = {  # noqa: F405
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
}
Q_CLUSTER = {**Q_CLUSTER, "sync": False}  # noqa: F405
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
# Counters written at once, inside the test's transaction; the buffered mode
# has its own tests (tests/core/test_metrics.py).
METRICS_FLUSH_SECONDS = 0
# No collectstatic in tests; whitenoise serves from the finders (below) instead.
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
