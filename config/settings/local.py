"""Settings for running on a developer's machine (`make run`)."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DEBUG", default=True)
# A local Evolution or simulator runs on this machine or the private network.
PROVIDER_ALLOW_PRIVATE_URLS = env.bool("PROVIDER_ALLOW_PRIVATE_URLS", default=True)
# The manifest storage needs `collectstatic`; runserver serves app static files itself.
STORAGES["staticfiles"] = {  # noqa: F405
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
}
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
