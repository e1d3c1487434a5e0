import pytest
from django.contrib.auth.models import Group

from core.audit import MAX_IDS, audit_record
from core.models import AuditEntry
from tests.factories.conversations import LeadFactory

pytestmark = pytest.mark.django_db


def test_audit_record_keeps_who_what_how_many_and_where(django_user_model):
    user = django_user_model.objects.create_user(username="ana", password="x")
    leads = LeadFactory.create_batch(3)

    entry = audit_record(
        action="lead_anonymize", source=AuditEntry.Source.ADMIN, actor=user, objects=leads
    )

    entry.refresh_from_db()
    assert entry.actor == user
    assert entry.actor_label == "ana"
    assert entry.target == ""
    assert entry.object_count == 3
    assert entry.object_ids == [str(lead.pk) for lead in leads]


def test_audit_record_from_a_command_counts_rows_it_did_not_load():
    entry = audit_record(
        action="purge_old_data",
        source=AuditEntry.Source.COMMAND,
        target="conversations.message",
        count=125_000,
        objects=range(MAX_IDS + 50),
    )

    assert entry.actor is None
    assert entry.actor_label == "command"
    assert entry.object_count == 125_000
    assert len(entry.object_ids) == MAX_IDS


def test_audit_trail_is_read_only_in_the_admin(client, django_user_model):
    ops = django_user_model.objects.create_user(username="ops1", password="x", is_staff=True)
    ops.groups.add(Group.objects.get(name="ops"))
    entry = audit_record(action="chip_block", source=AuditEntry.Source.ADMIN, actor=ops)
    client.force_login(ops)

    assert client.get("/admin/core/auditentry/").status_code == 200
    assert client.get(f"/admin/core/auditentry/{entry.pk}/change/").status_code == 200
    assert client.get("/admin/core/auditentry/add/").status_code == 403
    response = client.post(f"/admin/core/auditentry/{entry.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_sdr_cannot_read_the_audit_trail(client, django_user_model):
    sdr = django_user_model.objects.create_user(username="sdr1", password="x", is_staff=True)
    sdr.groups.add(Group.objects.get(name="sdr"))
    client.force_login(sdr)

    assert client.get("/admin/core/auditentry/").status_code == 403
