from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from channels.webhooks import webhook
from config import views
from conversations.chatwoot_webhook import chatwoot_webhook

urlpatterns = [
    # Nothing public lives at the root: send people to the dashboard.
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    path("health", views.health, name="health"),
    path("metrics", views.metrics, name="metrics"),
    # Before admin/: the admin's catch-all would answer these paths with a 404.
    path("admin/sandbox/", include("agent.urls")),
    path("admin/", admin.site.urls),
    # Before the providers' pattern, which would take "chatwoot" for a provider.
    path("webhooks/chatwoot/<str:token>/", chatwoot_webhook, name="chatwoot-webhook"),
    path("webhooks/<str:provider>/<str:chip_key>/", webhook, name="webhook"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
]
