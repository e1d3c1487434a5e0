from django.contrib import admin
from django.urls import include, path
from django_prometheus import exports
from drf_spectacular.views import SpectacularAPIView

from channels.webhooks import WebhookView
from config import views

admin.site.site_header = "SDR Ops"
admin.site.site_title = "SDR Ops"
admin.site.index_title = "Operação"

urlpatterns = [
    path("health", views.health, name="health"),
    path("metrics", exports.ExportToDjangoView, name="metrics"),
    # Before admin/: the admin's catch-all would answer these paths with a 404.
    path("admin/sandbox/", include("agent.urls")),
    path("admin/", admin.site.urls),
    path("webhooks/<str:provider>/<str:chip_key>/", WebhookView.as_view(), name="webhook"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
]
