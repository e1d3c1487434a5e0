"""A campaign's audience: imported from a CSV/XLSX file or picked from the leads list.

An import is all or nothing: every row is checked first (phone normalised to
E.164 with core.phones, default region BR), invalid rows come back with their
line number and why, and only a file without errors is written, in one
transaction and a fixed number of queries whatever its size. Rows with the
same phone are merged into one lead; a lead already in the campaign is
counted, not added twice.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from campaigns.models import Campaign, CampaignRecipient
from campaigns.services import FINISHED, CampaignError, campaign_enqueue_added
from conversations.models import Lead
from core import bulk
from core.phones import to_e164

PHONE_COLUMNS = ("telefone", "phone", "celular", "whatsapp", "numero", "número", "fone")
NAME_COLUMNS = ("nome", "name")
COMPANY_COLUMNS = ("empresa", "company")
EMAIL_COLUMNS = ("email", "e-mail")
MAX_ERRORS_SHOWN = 200
MAX_NAME = 200


class AudienceFileError(ValueError):
    """The file cannot be read at all (a translated message for the manager)."""


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str
    value: str = ""


@dataclass
class AudienceRow:
    line: int
    phone: str
    name: str = ""
    company: str = ""
    email: str = ""
    variables: dict[str, str] = field(default_factory=dict)


@dataclass
class ImportReport:
    rows: int = 0
    leads_created: int = 0
    leads_existing: int = 0
    added: int = 0
    already_in_campaign: int = 0
    duplicates_merged: int = 0
    queued: int = 0
    errors: list[RowError] = field(default_factory=list)
    imported: bool = False

    @property
    def error_count(self) -> int:
        return len(self.errors)


# --- Reading files ------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a phone typed as a number in Excel
    return str(value).strip()


def _csv_rows(content: bytes) -> Iterator[list[str]]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = content.decode("cp1252", errors="replace")  # Excel's "CSV" on Windows
    sample = text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    yield from csv.reader(io.StringIO(text), dialect)


def _xlsx_rows(content: bytes) -> Iterator[list[str]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a broken file
        raise AudienceFileError(gettext("Unreadable XLSX file")) from exc
    try:
        for row in book.worksheets[0].iter_rows(values_only=True):
            yield [_cell(value) for value in row]
    finally:
        book.close()


def audience_file_rows(*, name: str, content: bytes) -> Iterator[list[str]]:
    """The file's rows as lists of strings, the header first."""
    if name.lower().endswith(".xlsx"):
        return _xlsx_rows(content)
    if name.lower().endswith((".csv", ".txt")):
        return _csv_rows(content)
    raise AudienceFileError(gettext("Send a .csv or .xlsx file"))


def _column(header: list[str], names: Iterable[str]) -> int | None:
    for index, title in enumerate(header):
        if title in names:
            return index
    return None


def audience_parse(rows: Iterable[list[str]]) -> tuple[list[AudienceRow], list[RowError], int]:
    """Validate and merge rows. Returns (one row per phone, errors, data rows read)."""
    iterator = iter(rows)
    header = [title.strip().lower() for title in next(iterator, [])]
    phone_at = _column(header, PHONE_COLUMNS)
    if phone_at is None:
        raise AudienceFileError(
            gettext("The first row must hold the column names, with a phone column (%(columns)s)")
            % {"columns": ", ".join(PHONE_COLUMNS)}
        )
    name_at = _column(header, NAME_COLUMNS)
    company_at = _column(header, COMPANY_COLUMNS)
    email_at = _column(header, EMAIL_COLUMNS)
    fixed = {phone_at, name_at, company_at, email_at}
    extras = [(i, title) for i, title in enumerate(header) if i not in fixed and title]
    by_phone: dict[str, AudienceRow] = {}
    errors: list[RowError] = []
    count = 0
    for line, values in enumerate(iterator, start=2):
        if not any(value.strip() for value in values):
            continue
        count += 1
        values = values + [""] * (len(header) - len(values))

        def get(index: int | None, values: list[str] = values) -> str:
            return values[index].strip() if index is not None else ""

        raw_phone = get(phone_at)
        if not raw_phone:
            errors.append(RowError(line, gettext("Empty phone")))
            continue
        try:
            phone = to_e164(raw_phone)
        except ValueError:
            errors.append(RowError(line, gettext("Invalid phone"), raw_phone))
            continue
        name = get(name_at)
        if len(name) > MAX_NAME:
            errors.append(
                RowError(
                    line,
                    gettext("Name longer than %(max)d characters") % {"max": MAX_NAME},
                    name[:40],
                )
            )
            continue
        row = AudienceRow(
            line=line,
            phone=phone,
            name=name,
            company=get(company_at)[:MAX_NAME],
            email=get(email_at)[:254],
            variables={title: get(i) for i, title in extras if get(i)},
        )
        known = by_phone.get(phone)
        if known is None:
            by_phone[phone] = row
            continue
        # The same person twice: keep the first values, fill what it lacked.
        known.name = known.name or row.name
        known.company = known.company or row.company
        known.email = known.email or row.email
        known.variables = {**row.variables, **known.variables}
    return list(by_phone.values()), errors, count


def _check_open(campaign: Campaign) -> None:
    if campaign.status in FINISHED:
        raise CampaignError(
            gettext("The campaign is %(status)s: it takes no new leads.")
            % {"status": campaign.get_status_display().lower()}
        )


# --- Writing ------------------------------------------------------------------------------


def audience_import(
    *,
    campaign: Campaign,
    name: str,
    content: bytes,
    skip_invalid: bool = False,
) -> ImportReport:
    """Read, check and add a file's rows to the campaign; nothing is written on an error.

    With `skip_invalid`, valid rows go in and invalid ones are only reported.
    """
    _check_open(campaign)
    parsed, errors, count = audience_parse(audience_file_rows(name=name, content=content))
    report = ImportReport(rows=count, errors=errors)
    report.duplicates_merged = count - len(errors) - len(parsed)
    if (errors and not skip_invalid) or not parsed:
        return report
    with transaction.atomic():
        _write(campaign, parsed, report)
    return report


def _write(campaign: Campaign, parsed: list[AudienceRow], report: ImportReport) -> None:
    if bulk.bulk_available():
        _write_staged(campaign, parsed, report)
        return
    phones = [row.phone for row in parsed]
    existing = dict(Lead.objects.filter(phone__in=phones).values_list("phone", "pk"))
    Lead.objects.bulk_create(
        [
            Lead(
                phone=row.phone,
                name=row.name,
                company=row.company,
                email=row.email,
                source=f"campanha:{campaign.pk}"[:100],
            )
            for row in parsed
            if row.phone not in existing
        ],
        # A lead the webhook created meanwhile is simply an existing one.
        ignore_conflicts=True,
    )
    lead_ids = dict(Lead.objects.filter(phone__in=phones).values_list("phone", "pk"))
    report.leads_existing = len(existing)
    report.leads_created = len(lead_ids) - len(existing)
    report.added = _add(campaign, [(lead_ids[row.phone], row.variables) for row in parsed], report)
    report.imported = True


def _write_staged(campaign: Campaign, parsed: list[AudienceRow], report: ImportReport) -> None:
    """PostgreSQL: the rows COPYed into a stage, then one INSERT for leads, one for recipients.

    Five statements whatever the file's size (core.bulk). ON CONFLICT keeps
    the ORM path's rules: an existing lead (or one a webhook creates
    meanwhile) is kept as it is, a lead already in the campaign is not added
    twice.
    """
    now = timezone.now()
    stage = bulk.stage_rows(
        prefix="audience",
        columns=[
            ("phone", "text"),
            ("name", "text"),
            ("company", "text"),
            ("email", "text"),
            ("variables", "jsonb"),
        ],
        rows=(
            (row.phone, row.name, row.company, row.email, json.dumps(row.variables))
            for row in parsed
        ),
    )
    created = bulk.insert_select(
        Lead,
        expressions={
            "phone": "s.phone",
            "name": "s.name",
            "company": "s.company",
            "email": "s.email",
        },
        values={"source": f"campanha:{campaign.pk}"[:100]},
        from_sql=f"{stage} s",
        on_conflict="ON CONFLICT (phone) DO NOTHING",
        now=now,
    )
    added = bulk.insert_select(
        CampaignRecipient,
        expressions={"lead_id": "l.id", "variables": "s.variables"},
        values={"campaign_id": campaign.pk},
        from_sql=f"{stage} s JOIN {Lead._meta.db_table} l ON l.phone = s.phone",
        on_conflict="ON CONFLICT (campaign_id, lead_id) DO NOTHING",
        now=now,
    )
    report.leads_created = created
    report.leads_existing = len(parsed) - created
    report.added = added
    report.already_in_campaign = len(parsed) - added
    report.queued = campaign_enqueue_added(campaign=campaign)
    report.imported = True


def _add(campaign: Campaign, leads: list[tuple[int, dict]], report: ImportReport) -> int:
    already = set(
        CampaignRecipient.objects.filter(
            campaign=campaign, lead_id__in=[pk for pk, _ in leads]
        ).values_list("lead_id", flat=True)
    )
    new = [(pk, variables) for pk, variables in leads if pk not in already]
    CampaignRecipient.objects.bulk_create(
        [CampaignRecipient(campaign=campaign, lead_id=pk, variables=v) for pk, v in new],
        ignore_conflicts=True,
    )
    report.already_in_campaign = len(already)
    report.queued = campaign_enqueue_added(campaign=campaign)
    return len(new)


def audience_add_leads(*, campaign: Campaign, lead_ids: list[int]) -> ImportReport:
    """The leads changelist's "Adicionar à campanha": the same bulk path as an import."""
    _check_open(campaign)
    report = ImportReport(rows=len(lead_ids))
    with transaction.atomic():
        report.added = _add(campaign, [(pk, {}) for pk in lead_ids], report)
        report.imported = True
    return report
