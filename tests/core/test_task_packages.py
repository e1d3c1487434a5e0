"""A package built by `task_package` is the one `async_task` would push, and runs the same."""

import pytest
from django_q.models import OrmQ
from django_q.signals import pre_enqueue
from django_q.signing import SignedPackage
from django_q.tasks import _sync, async_task

from channels.models import WebhookEvent
from core.task_packages import task_package, task_push
from tests.channels.webhooks import chip_for

pytestmark = pytest.mark.django_db


def test_the_package_holds_what_async_task_would_sign_but_its_id_name_and_time():
    seen = []

    def keep(sender, task, **kwargs):
        seen.append(dict(task))

    pre_enqueue.connect(keep)
    try:
        async_task(
            "channels.tasks.process_webhook_event", 7, group="webhooks", cluster="c1", save=False
        )
    finally:
        pre_enqueue.disconnect(keep)
    [theirs] = seen

    ours = SignedPackage.loads(
        task_package(
            "channels.tasks.process_webhook_event",
            7,
            cluster="c1",
            name="webhook event 7",
            group="webhooks",
            save=False,
        )
    )

    differ = {"id", "name", "started"}
    assert {k: v for k, v in ours.items() if k not in differ} == {
        k: v for k, v in theirs.items() if k not in differ
    }
    assert set(ours) == set(theirs)
    assert ours["name"] == "webhook event 7"
    assert len(ours["id"]) == 32
    assert ours["id"] != theirs["id"]


def test_each_package_has_its_own_id_and_a_name_the_task_row_can_hold():
    first = SignedPackage.loads(task_package("x.y", cluster="c", name="n" * 300))
    second = SignedPackage.loads(task_package("x.y", cluster="c", name="n"))
    assert first["id"] != second["id"]
    assert len(first["name"]) == 100


@pytest.mark.django_db(transaction=True)
def test_a_pushed_package_runs_through_the_worker(settings):
    chip = chip_for("sandbox")
    event = WebhookEvent.objects.create(
        chip=chip,
        provider="sandbox",
        event_type="message",
        dedupe_key="message:p1",
        payload={"type": "message", "id": "p1", "from": "+5511999990001", "text": "oi"},
    )
    cluster = settings.Q_CLUSTER["name"]

    task_push(
        task_package(
            "channels.tasks.process_webhook_event", event.pk, cluster=cluster, name="t", save=False
        ),
        cluster,
    )

    [queued] = OrmQ.objects.all()
    assert queued.key == cluster
    _sync(queued.payload)
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
