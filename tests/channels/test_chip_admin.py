"""The chip pages as a new operator meets them (issue 12, "the first hour")."""

from __future__ import annotations

import pytest
from django.urls import reverse

from channels.models import Chip
from conversations.models import Lead
from tests.factories.channels import ChipFactory
from tests.factories.conversations import LeadFactory
from tests.security.forms import change_form_data

pytestmark = pytest.mark.django_db


def _add_chip(client, **fields: str):
    add = reverse("admin:channels_chip_add")
    data = change_form_data(client.get(add))
    data.update({"name": "Vendas 1", "provider": "sandbox", **fields})
    return client.post(add, data)


def test_ops_type_a_phone_as_people_write_it_and_it_is_saved_in_e164(role_client):
    client = role_client("ops")
    response = _add_chip(client, phone="(11) 91234-5678")
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Chip.objects.get(name="Vendas 1").phone == "+5511912345678"


def test_a_phone_that_is_not_one_is_refused_in_portuguese(role_client):
    client = role_client("ops")
    response = _add_chip(client, phone="(11) 1234")
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["phone"]
    assert errors == ["Informe um telefone com DDD, por exemplo (11) 91234-5678."]
    assert not Chip.objects.exists()


def test_a_lead_phone_typed_nationally_is_saved_in_e164(role_client):
    lead = LeadFactory(phone="+5511999990001")
    client = role_client("ops")
    url = reverse("admin:conversations_lead_change", args=[lead.pk])
    data = change_form_data(client.get(url))
    data["phone"] = "(21) 98888-7777"
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Lead.objects.get(pk=lead.pk).phone == "+5521988887777"


def test_a_phone_already_taken_names_the_chip_conflict_not_the_format(role_client):
    ChipFactory(phone="+5511912345678")
    response = _add_chip(role_client("ops"), phone="11 91234 5678")
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["phone"][0].startswith("Chip")


def _row(html: str, name: str) -> str:
    rows = [row for row in html.split("<tr")[1:] if f">{name}</a>" in row]
    assert len(rows) == 1, f"no single row for {name}"
    return rows[0]


def test_a_blocked_chip_reads_blocked_in_the_chip_list_not_connected(role_client):
    blocked = ChipFactory(name="Bloqueável", status=Chip.Status.CONNECTED)
    ChipFactory(name="Ativo", status=Chip.Status.CONNECTED)
    client = role_client("ops")
    changelist = reverse("admin:channels_chip_changelist")
    client.post(changelist, {"action": "block_chips", "_selected_action": [blocked.pk], "index": 0})

    html = client.get(changelist).content.decode()
    assert "core/pills.css" in html
    row = _row(html, "Bloqueável")
    assert '<span class="pill pill-blocked"' in row
    assert ">bloqueado</span>" in row
    assert row.index("pill-blocked") < row.index("pill-connected")
    active = _row(html, "Ativo")
    assert '<span class="pill pill-connected">Conectado</span>' in active
    assert "pill-blocked" not in active
