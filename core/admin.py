from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core import admin_tasks  # noqa: F401  (django-q2's admins, locked down)
from core.admin_utils import ReadOnlyAdmin
from core.alerts import alerts_acknowledge, alerts_resolve
from core.audit import audit_admin
from core.models import Alert, AuditEntry, WorkerHeartbeat


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["cluster", "beat_at", "age_seconds", "host", "pid", "beats"]
    readonly_fields = [*list_display, "first_beat_at"]

    @admin.display(description=_("age (s)"))
    def age_seconds(self, obj: WorkerHeartbeat) -> int:
        return int((timezone.now() - obj.beat_at).total_seconds())


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor_label", "source", "action", "target", "object_count"]
    list_filter = ["source", "action", "target", ("at", admin.DateFieldListFilter)]
    search_fields = ["actor_label", "action"]
    date_hierarchy = "at"
    readonly_fields = [*list_display, "object_ids", "detail"]
    list_select_related = ["actor"]


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["opened_at", "status", "condition", "title", "subject", "last_seen_at"]
    list_filter = ["status", "condition", ("opened_at", admin.DateFieldListFilter)]
    search_fields = ["title", "subject"]
    readonly_fields = [
        "condition",
        "subject",
        "status",
        "title",
        "detail",
        "value",
        "opened_at",
        "last_seen_at",
        "acknowledged_at",
        "acknowledged_by",
        "resolved_at",
        "resolved_by",
    ]
    list_select_related = ["acknowledged_by", "resolved_by"]
    actions = ["acknowledge", "resolve"]

    def has_acknowledge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("core.acknowledge_alert")

    @admin.action(description=_("Acknowledge (I'm on it)"), permissions=["acknowledge"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        changed = alerts_acknowledge(alerts=queryset, user=request.user)
        audit_admin(request, action="alert_acknowledge", target=Alert, objects=changed)
        self.message_user(
            request,
            ngettext("%(n)d alert acknowledged.", "%(n)d alerts acknowledged.", len(changed))
            % {"n": len(changed)},
        )

    @admin.action(description=_("Resolve"), permissions=["acknowledge"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        changed = alerts_resolve(alerts=queryset, user=request.user)
        audit_admin(request, action="alert_resolve", target=Alert, objects=changed)
        self.message_user(
            request,
            ngettext("%(n)d alert resolved.", "%(n)d alerts resolved.", len(changed))
            % {"n": len(changed)},
        )
