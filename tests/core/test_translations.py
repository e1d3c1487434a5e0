"""One language: English msgids in the code, Brazilian Portuguese in locale/pt_BR.

The catalog must translate every msgid the code and templates hold (a new
string without a translation fails here, not in front of a user), and the
compiled .mo the project ships must be the .po of the same commit.
"""

from __future__ import annotations

import ast
import gettext
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation

from core.models import Alert
from tests.factories import core as core_f

ROOT = Path(settings.BASE_DIR)
PO = ROOT / "locale" / "pt_BR" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|\{(\w*)\}")


@dataclass
class Entry:
    msgid: str = ""
    msgid_plural: str | None = None
    msgctxt: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False

    @property
    def key(self) -> str:
        return f"{self.msgctxt}\x04{self.msgid}" if self.msgctxt is not None else self.msgid


def parse_po(path: Path) -> list[Entry]:
    """The entries of a .po file (the header excluded), with the stdlib only."""
    entries: list[Entry] = []
    entry, current = Entry(), None
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if not line.strip():
            if current is not None:
                entries.append(entry)
            entry, current = Entry(), None
            continue
        if line.startswith("#~"):
            entry.obsolete = True
            continue
        if line.startswith("#,"):
            entry.flags |= {flag.strip() for flag in line[2:].split(",")}
            continue
        if line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if line.startswith('"'):
            value = ast.literal_eval(line)
        else:
            current, value = keyword, ast.literal_eval(rest)
            if current.startswith("msgstr"):
                index = int(current[7:-1]) if "[" in current else 0
                entry.msgstr[index] = ""
        if current == "msgid":
            entry.msgid += value
        elif current == "msgid_plural":
            entry.msgid_plural = (entry.msgid_plural or "") + value
        elif current == "msgctxt":
            entry.msgctxt = (entry.msgctxt or "") + value
        else:
            index = int(current[7:-1]) if "[" in current else 0
            entry.msgstr[index] += value
    return [e for e in entries if e.msgid and not e.obsolete]


def untranslated(entries: list[Entry]) -> list[str]:
    return [
        e.msgid for e in entries if "fuzzy" in e.flags or not e.msgstr or not all(e.msgstr.values())
    ]


def test_catalog_translates_every_entry_without_fuzzy_ones():
    entries = parse_po(PO)
    assert len(entries) > 100
    assert untranslated(entries) == []


def test_translations_keep_the_placeholders_of_their_msgid():
    wrong = []
    for e in parse_po(PO):
        wanted = set(PLACEHOLDER.findall(e.msgid)) | set(PLACEHOLDER.findall(e.msgid_plural or ""))
        for text in e.msgstr.values():
            if set(PLACEHOLDER.findall(text)) - wanted or (
                e.msgid_plural is None and set(PLACEHOLDER.findall(text)) != wanted
            ):
                wrong.append(e.msgid)
    assert wrong == []


# Words only Portuguese has: a msgid holding one is a string someone wrote in
# Portuguese instead of English (examples of lead data, like "Aniversário", are fine).
PORTUGUESE_WORDS = re.compile(
    r"\b(não|você|está|são|uma|para|com|pelo|pela|já|também|ainda|das|dos|nas|nos|ou|seu|sua|"
    r"sim|como|mensagens?|conversas?|campanhas?|envios?|agente|aguardando|nenhum|nenhuma|"
    r"adicionar|importar|enviar|responder|voltar)\b",
    re.IGNORECASE,
)


def test_msgids_are_english():
    assert [e.msgid for e in parse_po(PO) if PORTUGUESE_WORDS.search(e.msgid)] == []


def test_shipped_mo_is_the_compiled_po():
    """The committed .mo (which tests and `python -m pytest` read) matches the .po."""
    with MO.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
    expected: dict[object, str] = {}
    for e in parse_po(PO):
        if e.msgid_plural is None:
            expected[e.key] = e.msgstr[0]
        else:
            expected |= {(e.key, index): text for index, text in e.msgstr.items()}
    compiled = {key: value for key, value in compiled.items() if key != ""}
    assert compiled == expected, "run `make messages` (or compilemessages) and commit the .mo"


def test_every_string_in_the_code_is_in_the_catalog(tmp_path):
    """makemessages over a copy of the project adds nothing and drops nothing."""
    copy = tmp_path / "project"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(
            ".*", "tests", "bench", "staticfiles", "__pycache__", "*.sqlite3*", "node_modules"
        ),
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local"}
    env["DATABASE_URL"] = "sqlite://:memory:"
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "--locale", "pt_BR", "--no-obsolete"],
        cwd=copy,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    refreshed = parse_po(copy / PO.relative_to(ROOT))
    assert untranslated(refreshed) == [], "new strings: run `make messages` and translate them"
    assert sorted(e.key for e in refreshed) == sorted(e.key for e in parse_po(PO)), (
        "catalog out of date: run `make messages`"
    )


# --- what a user reads ------------------------------------------------------------------


@pytest.fixture
def ops_client(client, django_user_model):
    user = django_user_model.objects.create_superuser(username="ops", password="x")
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_dashboard_and_django_admin_read_portuguese_by_default(ops_client):
    page = ops_client.get(reverse("admin:index")).content.decode()
    assert "Painel de operação" in page
    assert "Leads aguardando resposta" in page
    assert "Encerrar sessão" in page  # Django's own text, same language


@pytest.mark.django_db
def test_dashboard_and_django_admin_read_english_by_language_code(ops_client, settings):
    settings.LANGUAGE_CODE = "en-us"
    page = ops_client.get(reverse("admin:index")).content.decode()
    assert "Operations dashboard" in page
    assert "Leads waiting for an answer" in page
    assert "Log out" in page
    assert "Painel de operação" not in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "heading", "done"),
    [
        ("pt-br", "Situação", "1 alerta reconhecido."),
        ("en-us", "Status", "1 alert acknowledged."),
    ],
)
def test_alert_admin_speaks_the_configured_language(ops_client, settings, language, heading, done):
    settings.LANGUAGE_CODE = language
    alert = core_f.AlertFactory()
    url = reverse("admin:core_alert_changelist")
    assert heading in ops_client.get(url).content.decode()
    response = ops_client.post(
        url, {"action": "acknowledge", "_selected_action": [alert.pk]}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == [done]


def test_gettext_at_runtime_follows_the_active_language():
    with translation.override("en"):
        assert str(Alert.Status.OPEN.label) == "Open"
    with translation.override("pt-br"):
        assert str(Alert.Status.OPEN.label) == "Aberto"
