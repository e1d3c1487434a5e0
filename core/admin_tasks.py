"""django-q2's admins, re-registered so no permission grant can turn them into
a way to run code on the worker.

A schedule's `func` (and `hook`, `args`, `kwargs`) is any importable path run
by the worker: whoever may add or change a schedule may run `os.system`.
Schedules are declared in code (core/schedules.py), so only superusers may
add or change them, whatever permissions a group is given later. Resubmitting
a task runs it again: it needs `django_q.resubmit_task`, not just view.
"""

from typing import Any

import django_q.admin as q_admin  # registers django-q2's admins before we replace them
from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django_q.models import Failure, OrmQ, Schedule, Success

from core.audit import audit_admin

RESUBMIT_PERMISSION = "django_q.resubmit_task"


class SuperuserWritesMixin:
    """Add and change only for superusers, even with the permission granted."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return request.user.is_superuser and super().has_add_permission(request, *args)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.is_superuser and super().has_change_permission(request, obj)


class ResubmitMixin:
    actions = ["resubmit_tasks"]

    def has_resubmit_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RESUBMIT_PERMISSION)

    @admin.action(description=_("Resubmit the selected tasks"), permissions=["resubmit"])
    def resubmit_tasks(self, request: HttpRequest, queryset: QuerySet) -> None:
        tasks = list(queryset)
        audit_admin(
            request,
            action="task_resubmit",
            target=self.model,
            objects=tasks,
            detail={"funcs": sorted({task.func for task in tasks})},
        )
        q_admin.resubmit_task(self, request, tasks)
        self.message_user(
            request,
            ngettext(
                "%(count)d task sent back to the queue.",
                "%(count)d tasks sent back to the queue.",
                len(tasks),
            )
            % {"count": len(tasks)},
        )


class ScheduleAdmin(SuperuserWritesMixin, q_admin.ScheduleAdmin):
    pass


class SuccessAdmin(ResubmitMixin, SuperuserWritesMixin, q_admin.TaskAdmin):
    pass


class FailureAdmin(ResubmitMixin, SuperuserWritesMixin, q_admin.FailAdmin):
    pass


class QueueAdmin(SuperuserWritesMixin, q_admin.QueueAdmin):
    pass


for model, model_admin in [
    (Schedule, ScheduleAdmin),
    (Success, SuccessAdmin),
    (Failure, FailureAdmin),
    (OrmQ, QueueAdmin),
]:
    if admin.site.is_registered(model):
        admin.site.unregister(model)
        admin.site.register(model, model_admin)
