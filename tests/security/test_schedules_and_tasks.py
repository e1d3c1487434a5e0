"""Issue 8, finding 1: no one but a superuser can make the worker run a function
of their choosing through django-q2's admin; resubmitting a task needs its own
permission."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse
from django.utils import timezone
from django_q.models import Failure, OrmQ, Schedule, Success

from core.models import AuditEntry
from tests.security.forms import change_form_data

pytestmark = pytest.mark.django_db

EVIL = "os.system"


@pytest.fixture
def schedule():
    return Schedule.objects.create(
        name="heartbeat probe",
        func="core.tasks.heartbeat",
        schedule_type=Schedule.MINUTES,
        minutes=1,
        repeats=-1,
        next_run=timezone.now(),
    )


def _schedule_form(client, schedule) -> dict:
    response = client.get(reverse("admin:django_q_schedule_change", args=[schedule.pk]))
    assert response.status_code == 200
    return change_form_data(response) | {"func": EVIL, "args": "'touch /tmp/pwned'"}


def _grant(role: str, *codenames: str) -> None:
    group = Group.objects.get(name=role)
    group.permissions.add(*Permission.objects.filter(codename__in=codenames))


def test_ops_cannot_point_a_schedule_at_another_function(role_client, superuser_client, schedule):
    data = _schedule_form(superuser_client, schedule)
    ops = role_client("ops")

    response = ops.post(reverse("admin:django_q_schedule_change", args=[schedule.pk]), data)

    assert response.status_code == 403
    schedule.refresh_from_db()
    assert schedule.func == "core.tasks.heartbeat"
    # The page itself stays readable: ops watch the periodic tasks run.
    page = ops.get(reverse("admin:django_q_schedule_change", args=[schedule.pk]))
    assert page.status_code == 200
    assert page.context_data["has_change_permission"] is False


def test_granting_schedule_permissions_later_still_does_not_open_the_door(
    role_client, superuser_client, schedule
):
    data = _schedule_form(superuser_client, schedule)
    _grant("ops", "add_schedule", "change_schedule", "change_success", "change_failure")
    ops = role_client("ops")

    changed = ops.post(reverse("admin:django_q_schedule_change", args=[schedule.pk]), data)
    added = ops.post(reverse("admin:django_q_schedule_add"), data | {"name": "evil"})

    assert (changed.status_code, added.status_code) == (403, 403)
    assert not Schedule.objects.filter(func=EVIL).exists()


def test_a_superuser_still_edits_schedules(superuser_client, schedule):
    data = _schedule_form(superuser_client, schedule) | {
        "func": "core.tasks.heartbeat",
        "args": "",
        "minutes": "5",
    }

    response = superuser_client.post(
        reverse("admin:django_q_schedule_change", args=[schedule.pk]), data
    )

    assert response.status_code == 302, response.context_data["adminform"].form.errors
    schedule.refresh_from_db()
    assert schedule.minutes == 5


def _task(model: type[Failure] | type[Success], task_id: str) -> Failure | Success:
    return model.objects.create(
        id=task_id * 32,
        name=f"heartbeat-{task_id}",
        func="core.tasks.heartbeat",
        started=timezone.now(),
        stopped=timezone.now(),
        success=model is Success,
        result=None if model is Success else "boom",
    )


def _failure() -> Failure:
    return _task(Failure, "a")


def _resubmit(client, model, task):
    url = reverse(f"admin:django_q_{model._meta.model_name}_changelist")
    return client.post(
        url, {"action": "resubmit_tasks", "_selected_action": [task.pk]}, follow=True
    )


def test_viewing_failed_tasks_does_not_allow_resubmitting_them(client, role_user):
    viewer = role_user("staff")
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_failure"))
    client.force_login(viewer)
    failure = _failure()

    response = _resubmit(client, Failure, failure)

    assert response.status_code == 200
    assert Failure.objects.filter(pk=failure.pk).exists()
    assert not OrmQ.objects.exists()
    # django-q2's own action, which needed only view, is gone.
    page = client.get(reverse("admin:django_q_failure_changelist"))
    assert page.context_data["action_form"] is None


def test_ops_resubmit_a_failed_task_and_it_is_audited(role_client):
    failure = _failure()

    response = _resubmit(role_client("ops"), Failure, failure)

    assert [str(m) for m in response.context["messages"]] == ["1 tarefa reenviada à fila."]
    assert not Failure.objects.filter(pk=failure.pk).exists()
    assert [q.func() for q in OrmQ.objects.all()] == ["core.tasks.heartbeat"]
    entry = AuditEntry.objects.get(action="task_resubmit")
    assert (entry.actor_label, entry.target, entry.object_ids) == (
        "ops-user",
        "django_q.failure",
        [failure.pk],
    )
    assert entry.detail == {"funcs": ["core.tasks.heartbeat"]}


def test_managers_and_sdrs_cannot_resubmit_successful_tasks(role_client):
    task = _task(Success, "b")
    for role in ("manager", "sdr"):
        assert _resubmit(role_client(role), Success, task).status_code == 403
    assert not OrmQ.objects.exists()
