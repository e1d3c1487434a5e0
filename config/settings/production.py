"""Production settings: refuse to start insecure."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import env

SECRET_KEY = env("SECRET_KEY", default="")
if not SECRET_KEY or SECRET_KEY.startswith("django-insecure") or len(SECRET_KEY) < 32:
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random value of at least 32 characters in production."
    )

SALT_KEY = env.list("SALT_KEY", default=[])
if not SALT_KEY or any(len(salt) < 16 or "not-for-production" in salt for salt in SALT_KEY):
    raise ImproperlyConfigured(
        "SALT_KEY must be set to random values of at least 16 characters in production: "
        "with SECRET_KEY it encrypts the chips' credentials."
    )

DEBUG = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
# Load balancers and `docker compose` probe /health over plain HTTP inside the
# network; it says only ok/degraded/down per check to anyone but staff.
# /metrics is not exempt: its bearer token must never travel in clear.
SECURE_REDIRECT_EXEMPT = [r"^health$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 30)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
# Preloading is a commitment of the whole domain (README, "Access and hardening"): opt in.
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
