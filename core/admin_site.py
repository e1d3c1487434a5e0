"""The admin site: the operations dashboard is the home page of ops and managers."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.translation import gettext_lazy as _

DASHBOARD_PERMISSION = "core.dashboard_alert"


class OpsAdminSite(admin.AdminSite):
    site_header = "SDR Ops"
    site_title = "SDR Ops"
    index_title = _("Operations")
    # "View site" goes to the dashboard; `/` redirects there too.
    site_url = "/admin/"

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "dashboard/tiles/",
                self.admin_view(self.dashboard_tiles),
                name="dashboard_tiles",
            ),
            *super().get_urls(),
        ]

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        if not request.user.has_perm(DASHBOARD_PERMISSION):
            return super().index(request, extra_context)
        from core.alerts import alerts_evaluate_on_request
        from core.dashboard_view import dashboard_context

        alerts_evaluate_on_request()
        # AdminSite.index with another template and the dashboard's context.
        request.current_app = self.name
        context = {
            **self.each_context(request),
            "title": self.index_title,
            "subtitle": None,
            "app_list": self.get_app_list(request),
            **dashboard_context(request),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/dashboard.html", context)

    def dashboard_tiles(self, request: HttpRequest) -> HttpResponse:
        """The dashboard's tiles alone, for the page's periodic partial refresh."""
        if not request.user.has_perm(DASHBOARD_PERMISSION):
            raise PermissionDenied
        from core.alerts import alerts_evaluate_on_request
        from core.dashboard_view import dashboard_context

        alerts_evaluate_on_request()
        response = TemplateResponse(
            request, "admin/dashboard_tiles.html", dashboard_context(request)
        )
        response["Cache-Control"] = "no-store"
        return response
