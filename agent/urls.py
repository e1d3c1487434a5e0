"""The agent's admin pages, mounted under /admin/sandbox/ (see config/urls.py)."""

from django.contrib import admin
from django.urls import path

from agent import views

app_name = "agent_sandbox"

urlpatterns = [
    path("", admin.site.admin_view(views.sandbox_chat), name="chat"),
    path("send/", admin.site.admin_view(views.sandbox_send), name="send"),
    path("reset/", admin.site.admin_view(views.sandbox_reset), name="reset"),
    path("messages/", admin.site.admin_view(views.sandbox_messages), name="messages"),
]
