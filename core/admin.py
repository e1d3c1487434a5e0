from django.contrib import admin
from django.utils import timezone

from core.admin_utils import ReadOnlyAdmin
from core.models import WorkerHeartbeat


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["cluster", "beat_at", "age_seconds", "host", "pid", "beats"]
    readonly_fields = list_display

    @admin.display(description="age (s)")
    def age_seconds(self, obj: WorkerHeartbeat) -> int:
        return int((timezone.now() - obj.beat_at).total_seconds())
