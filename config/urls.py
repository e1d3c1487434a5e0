from django.contrib import admin
from django.urls import path
from django_prometheus import exports

from config import views

admin.site.site_header = "SDR Ops"
admin.site.site_title = "SDR Ops"
admin.site.index_title = "Operação"

urlpatterns = [
    path("health", views.health, name="health"),
    path("metrics", exports.ExportToDjangoView, name="metrics"),
    path("admin/", admin.site.urls),
]
