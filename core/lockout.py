"""The page a locked-out admin login gets (django-axes' AXES_LOCKOUT_CALLABLE)."""

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    minutes = max(1, round(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
    context = {
        **admin.site.each_context(request),  # the admin's header and theme
        "title": _("Access temporarily blocked"),
        "minutes": minutes,
        "is_nav_sidebar_enabled": False,  # nobody is logged in: no app list to show
    }
    return render(request, "admin/lockout.html", context, status=429)
