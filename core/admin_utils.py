"""Small admin building blocks shared by every app's admin."""

import json
from functools import cached_property
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections, models
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.text import Truncator

from core.phones import PhoneFormField, to_e164, validate_e164

# Provider URLs are https; Django 6 makes that the form default, say it now.
URLFIELD_HTTPS = {models.URLField: {"assume_scheme": "https"}}


def pretty_json(value: Any) -> str:
    """Raw provider JSON, indented and escaped, for read-only admin fields."""
    if value in (None, "", {}, []):
        return "—"
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    return format_html('<pre class="json-pretty">{}</pre>', text)


def short(text: str, length: int = 60) -> str:
    return Truncator(text or "").chars(length) or "—"


class PhoneSearchMixin:
    """Let the admin search box find a lead however the operator typed the phone.

    Phones are stored in E.164 (`+5511999990000`); operators paste
    `(11) 99999-0000` or `5511999990000`. A term that parses as a phone number
    is looked up by exact match on the normalized value in
    `phone_search_fields` (an index lookup), instead of `icontains` over every
    search field, which scans the whole table on millions of rows.
    """

    phone_search_fields: tuple[str, ...] = ()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        phone = self._as_phone(search_term)
        if phone is None:
            return super().get_search_results(  # type: ignore[misc]
                request, queryset, search_term
            )
        match = Q()
        for field in self.phone_search_fields:
            match |= Q(**{field: phone})
        return queryset.filter(match), False

    def _as_phone(self, term: str) -> str | None:
        term = term.strip()
        if not self.phone_search_fields or sum(ch.isdigit() for ch in term) < 8:
            return None
        if any(ch.isalpha() for ch in term):
            return None
        try:
            return to_e164(term)
        except ValueError:
            return None


class PhoneInputMixin:
    """Phone fields of the admin's forms take a number as typed and save it in E.164.

    Operators type `(11) 91234-5678`; the model stores `+5511912345678` and
    its validator refuses anything else. A model field with the E.164
    validator gets the form field that normalizes first.
    """

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if validate_e164 in getattr(db_field, "validators", ()):
            kwargs.setdefault("form_class", PhoneFormField)
        return super().formfield_for_dbfield(db_field, request, **kwargs)  # type: ignore[misc]


class EstimatedCountPaginator(Paginator):
    """Use PostgreSQL's row estimate for an unfiltered changelist of a big table.

    An exact COUNT(*) over a million messages costs more than the rest of the
    page together; nobody needs "1,000,000" to be exact, and every filtered
    view still counts exactly.
    """

    EXACT_BELOW = 100_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if isinstance(queryset, QuerySet) and not queryset.query.where:
            estimate = self._estimate(queryset)
            if estimate is not None and estimate >= self.EXACT_BELOW:
                return estimate
        return super().count

    @staticmethod
    def _estimate(queryset: QuerySet) -> int | None:
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                [queryset.model._meta.db_table],
            )
            row = cursor.fetchone()
        return int(row[0]) if row and row[0] > 0 else None


class ReadOnlyAdmin(admin.ModelAdmin):
    """For records written only by the platform (events, runs, heartbeats)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        # Keeps the change page viewable (read-only) for users with view permission.
        return False
