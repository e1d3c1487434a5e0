"""Audience import and "Adicionar à campanha" through the admin, as a manager does it."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from openpyxl import Workbook

from campaigns.audience import audience_import
from campaigns.models import Campaign, CampaignRecipient
from conversations.models import Lead
from core.models import AuditEntry
from tests.factories.campaigns import CampaignFactory
from tests.factories.conversations import LeadFactory

pytestmark = pytest.mark.django_db

BRAZILIAN_CSV = """nome;telefone;empresa;cidade
Ana Souza;(11) 91234-5678;Clínica Sol;São Paulo
Ana S.;11912345678;;
Ana;+55 11 9 1234-5678;;Campinas
Bruno Lima;5521987654321;Academia Forte;Rio de Janeiro
Carla;021 98888-7777;;Niterói
Dênis;(11) 1234;;Santos
;;;
Eva;não tenho;;
Fábio;+55 (31) 3333-4444;Loja;BH
"""


def upload(client, campaign, content, name="publico.csv", **extra):
    data = content.encode() if isinstance(content, str) else content
    return client.post(
        f"/admin/campaigns/campaign/{campaign.pk}/import/",
        {"file": SimpleUploadedFile(name, data), **extra},
    )


def test_brazilian_formats_become_one_lead_and_invalid_rows_are_reported_by_line(
    staff_in,
):
    campaign = CampaignFactory()
    client = staff_in("manager")

    response = upload(client, campaign, BRAZILIAN_CSV)

    assert response.status_code == 200
    report = response.context["report"]
    assert not report.imported
    assert [(e.line, e.reason, e.value) for e in report.errors] == [
        (7, "Telefone inválido", "(11) 1234"),
        (9, "Telefone inválido", "não tenho"),
    ]
    page = response.content.decode()
    assert "Nada foi importado: 2 linhas inválidas" in page
    assert not Lead.objects.exists()
    assert not campaign.recipients.exists()

    response = upload(client, campaign, BRAZILIAN_CSV, skip_invalid="on")

    report = response.context["report"]
    assert report.imported
    assert report.rows == 8
    assert report.duplicates_merged == 2
    assert report.added == 4
    phones = set(Lead.objects.values_list("phone", flat=True))
    assert phones == {"+5511912345678", "+5521987654321", "+5521988887777", "+553133334444"}
    ana = campaign.recipients.get(lead__phone="+5511912345678")
    assert ana.lead.name == "Ana Souza"  # the first row wins, the others fill gaps
    assert ana.lead.company == "Clínica Sol"
    assert ana.variables == {"cidade": "São Paulo"}
    entry = AuditEntry.objects.get(action="campaign_audience_import")
    assert entry.actor_label == "manager-user"
    assert entry.detail["added"] == 4


def test_a_file_that_fails_halfway_imports_nothing(staff_in):
    campaign = CampaignFactory()
    rows = [f"Lead {i},+55119{i:08d}" for i in range(500)]
    rows.insert(300, "Quebrado,123")
    content = "nome,telefone\n" + "\n".join(rows)

    response = upload(staff_in("manager"), campaign, content)

    report = response.context["report"]
    assert [(e.line, e.reason) for e in report.errors] == [(302, "Telefone inválido")]
    assert not Lead.objects.exists()
    assert not CampaignRecipient.objects.exists()


def test_existing_leads_are_reused_and_already_added_ones_counted(staff_in):
    campaign = CampaignFactory()
    known = LeadFactory(phone="+5511912345678", name="Ana da base")
    CampaignRecipient.objects.create(campaign=campaign, lead=known)
    content = "telefone,nome\n11912345678,Ana\n11 98765-4321,Beto\n"

    report = upload(staff_in("manager"), campaign, content).context["report"]

    assert report.imported
    assert report.leads_created == 1
    assert report.leads_existing == 1
    assert report.already_in_campaign == 1
    assert report.added == 1
    assert campaign.recipients.count() == 2
    known.refresh_from_db()
    assert known.name == "Ana da base"


def test_xlsx_with_numeric_phones(staff_in):
    book = Workbook()
    sheet = book.active
    sheet.append(["Nome", "Celular", "Plano"])
    sheet.append(["Gil", 11987654321, "ouro"])
    sheet.append(["Hel", "(21) 99999-0000", "prata"])
    buffer = io.BytesIO()
    book.save(buffer)
    campaign = CampaignFactory()

    response = upload(staff_in("manager"), campaign, buffer.getvalue(), name="lista.xlsx")

    assert response.context["report"].added == 2
    assert {
        (phone, variables["plano"])
        for phone, variables in campaign.recipients.values_list("lead__phone", "variables")
    } == {("+5511987654321", "ouro"), ("+5521999990000", "prata")}


def test_a_file_without_a_phone_column_or_of_another_type_is_refused(staff_in):
    campaign = CampaignFactory()
    client = staff_in("manager")
    response = upload(client, campaign, "nome,cidade\nAna,Recife\n")
    assert "coluna de telefone" in response.content.decode()
    response = upload(client, campaign, "x", name="lista.pdf")
    assert "Envie um arquivo .csv ou .xlsx" in response.content.decode()
    response = upload(client, campaign, b"not a zip", name="lista.xlsx")
    assert "XLSX ilegível" in response.content.decode()
    assert not Lead.objects.exists()


def test_only_roles_that_change_campaigns_may_import(staff_in):
    campaign = CampaignFactory()
    for role in ("ops", "sdr", None):
        client = staff_in(role)
        assert client.get(f"/admin/campaigns/campaign/{campaign.pk}/import/").status_code == 403
        assert upload(client, campaign, "telefone\n11987654321\n").status_code == 403
        client.logout()
    assert not Lead.objects.exists()


def test_leads_added_to_a_running_campaign_are_queued_at_once(provider_chip, staff_in):
    campaign = CampaignFactory(chips=[provider_chip()], status=Campaign.Status.RUNNING)

    report = upload(staff_in("manager"), campaign, "telefone\n11987654321\n").context["report"]

    assert report.queued == 1
    assert campaign.recipients.get().status == CampaignRecipient.Status.QUEUED


def test_add_to_campaign_from_the_leads_list(staff_in):
    campaign = CampaignFactory()
    CampaignFactory(status=Campaign.Status.CANCELLED, name="Antiga")
    leads = [LeadFactory() for _ in range(3)]
    client = staff_in("manager")
    selection = {"action": "add_to_campaign", "_selected_action": [lead.pk for lead in leads]}

    confirm = client.post("/admin/conversations/lead/", selection)
    assert confirm.status_code == 200
    assert "Antiga" not in confirm.content.decode()  # finished campaigns are not offered
    response = client.post(
        "/admin/conversations/lead/",
        {**selection, "post": "yes", "campaign": campaign.pk},
        follow=True,
    )

    assert "3 lead(s) adicionado(s)" in response.content.decode()
    assert set(campaign.recipients.values_list("lead_id", flat=True)) == {lead.pk for lead in leads}
    assert AuditEntry.objects.get(action="campaign_audience_add").detail["added"] == 3


def test_add_to_campaign_is_not_offered_to_ops_or_sdr(staff_in):
    lead = LeadFactory()
    campaign = CampaignFactory()
    for role in ("ops", "sdr"):
        client = staff_in(role)
        page = client.get("/admin/conversations/lead/")
        assert b"add_to_campaign" not in page.content
        client.post(
            "/admin/conversations/lead/",
            {
                "action": "add_to_campaign",
                "_selected_action": [lead.pk],
                "post": "yes",
                "campaign": campaign.pk,
            },
        )
        client.logout()
    assert not campaign.recipients.exists()


def test_the_import_query_count_does_not_grow_with_the_file(db):
    counts = []
    for size, offset in ((5, 0), (400, 1000)):
        campaign = CampaignFactory()
        rows = "\n".join(f"Lead {i};(11) 9{i:04d}-{i:04d}" for i in range(offset, offset + size))
        with CaptureQueriesContext(connection) as queries:
            report = audience_import(
                campaign=campaign, name="publico.csv", content=f"nome;telefone\n{rows}\n".encode()
            )
        assert report.imported
        assert report.added == size == report.leads_created
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
