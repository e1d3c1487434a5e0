import copy
from typing import Any

import segno
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from channels import circuit, credentials, pacing, quarantine
from channels.models import Chip, WebhookEvent
from channels.services import webhook_events_reprocess
from core.admin_utils import (
    URLFIELD_HTTPS,
    EstimatedCountPaginator,
    PhoneInputMixin,
    PhoneSearchMixin,
    ReadOnlyAdmin,
    pretty_json,
    short,
)
from core.audit import audit_admin
from core.redaction import mapping_redact, secret_mask, text_redact


class SecretInput(forms.PasswordInput):
    """Never renders the secret: a masked placeholder, and a box to remove it.

    Left blank, the field keeps the stored value (ChipAdminForm.clean).
    """

    def __init__(self) -> None:
        super().__init__(render_value=False, attrs={"autocomplete": "new-password"})

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        attrs = dict(attrs or {})
        if value:
            attrs["placeholder"] = gettext("%(mask)s (blank: keeps the current one)") % {
                "mask": secret_mask(str(value))
            }
        return super().get_context(name, value, attrs)

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        html = super().render(name, value, attrs, renderer)
        if not value:
            return html
        remove = format_html(
            ' <label><input type="checkbox" name="{}__clear" value="1"> {}</label>',
            name,
            gettext("remove"),
        )
        return mark_safe(html + remove)  # noqa: S308 - both parts are escaped above


class ChipAdminForm(forms.ModelForm):
    class Meta:
        model = Chip
        # The admin's fieldsets choose the fields (modelform_factory); Meta gives the widgets.
        fields: list[str] = []
        widgets = {name: SecretInput() for name in credentials.SECRET_FIELDS}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The stored value is never sent to the browser, so a blank field is
        # "unchanged", not "changed to blank" (the history would say otherwise).
        for name in credentials.SECRET_FIELDS:
            if name in self.fields:
                clear = self.add_prefix(f"{name}__clear")
                self.fields[name].has_changed = lambda initial, data, clear=clear: bool(
                    data or self.data.get(clear)
                )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        for name in credentials.SECRET_FIELDS:
            if name not in self.fields:
                continue
            if self.data.get(self.add_prefix(f"{name}__clear")):
                cleaned[name] = ""
            elif not cleaned.get(name) and self.instance.pk:
                cleaned[name] = getattr(self.instance, name)
        return cleaned


@admin.register(Chip)
class ChipAdmin(PhoneInputMixin, PhoneSearchMixin, admin.ModelAdmin):
    form = ChipAdminForm
    formfield_overrides = URLFIELD_HTTPS
    # What tells a working chip from one in trouble comes first, on screen at
    # 1440 px: the sending switches are in the status pill, the failure count
    # in the circuit's; the last send and the agent are on the chip's page.
    list_display = [
        "name",
        "status_pill",
        "circuit_pill",
        "sends_today",
        "last_error_short",
        "phone",
        "provider",
        "quality_rating",
        "provider_token",
    ]
    list_filter = ["provider", "status", "circuit_state", "can_prospect", "can_follow_up"]
    actions = ["block_chips", "unblock_chips", "reset_circuit", "rotate_webhook_key"]
    list_select_related = ["agent_profile"]
    search_fields = ["name", "phone", "instance_id"]
    phone_search_fields = ("phone",)
    autocomplete_fields = ["agent_profile"]
    readonly_fields = [
        "webhook_url",
        "credentials_masked",
        "status_changed_at",
        "last_sent_at",
        "next_send_at",
        "next_proactive_at",
        "circuit_state",
        "consecutive_failures",
        "circuit_opened_at",
        "circuit_retry_at",
        "circuit_open_count",
        "sends_today",
        "recent_errors",
        "quality_rating",
        "health_pretty",
        "qr_code_display",
        "last_error",
        "last_error_at",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "provider", "phone", "status", "agent_profile"]}),
        (
            _("Provider connection"),
            {
                "fields": [
                    "webhook_url",
                    "api_base_url",
                    "instance_id",
                    "api_token",
                    "client_token",
                    "app_secret",
                    "verify_token",
                    "webhook_token",
                ]
            },
        ),
        (
            _("Send pacing"),
            {
                "fields": [
                    "time_zone",
                    "min_interval_seconds",
                    "jitter_seconds",
                    "daily_cap",
                    "warmup_days",
                    "warmup_started_on",
                    "send_window_start",
                    "send_window_end",
                    "can_prospect",
                    "can_follow_up",
                    "last_sent_at",
                    "next_send_at",
                    "next_proactive_at",
                ]
            },
        ),
        (
            _("Circuit breaker"),
            {
                "fields": [
                    "circuit_state",
                    "consecutive_failures",
                    "circuit_opened_at",
                    "circuit_retry_at",
                    "circuit_open_count",
                    "sends_today",
                    "recent_errors",
                ]
            },
        ),
        (
            _("Health"),
            {
                "fields": [
                    "status_changed_at",
                    "quality_rating",
                    "health_pretty",
                    "qr_code_display",
                    "last_error",
                    "last_error_at",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
    ]

    @admin.display(description=_("webhook URL"))
    def webhook_url(self, obj: Chip) -> str:
        if not obj.pk:
            return "— (saved chips get a secret URL)"
        # The key is the credential: masked here, clear only through the reveal page.
        return credentials.chip_webhook_path_masked(obj)

    class Media:
        css = {"all": ["core/pills.css"]}

    @admin.display(description=_("status"), ordering="status")
    def status_pill(self, obj: Chip) -> str:
        # A blocked chip is still "connected" to its provider; said first, in
        # red, so it never reads like a chip that sends.
        status = format_html(
            '<span class="pill pill-{}">{}</span>', obj.status, obj.get_status_display()
        )
        if not obj.can_prospect and not obj.can_follow_up:
            blocked = format_html(
                '<span class="pill pill-blocked" title="{}">{}</span>',
                gettext("Blocked: no prospecting or follow-ups; replies to leads still go out."),
                gettext("blocked"),
            )
            return format_html("{} {}", blocked, status)
        if not obj.can_prospect:
            return format_html(
                '{} <span class="pill pill-limited">{}</span>', status, gettext("no prospecting")
            )
        if not obj.can_follow_up:
            return format_html(
                '{} <span class="pill pill-limited">{}</span>', status, gettext("no follow-ups")
            )
        return status

    @admin.display(description=_("circuit state"), ordering="circuit_state")
    def circuit_pill(self, obj: Chip) -> str:
        pill = format_html(
            '<span class="pill pill-circuit-{}">{}</span>',
            obj.circuit_state,
            obj.get_circuit_state_display(),
        )
        if not obj.consecutive_failures:
            return pill
        failures = ngettext(
            "%(count)d failure in a row", "%(count)d failures in a row", obj.consecutive_failures
        ) % {"count": obj.consecutive_failures}
        return format_html("{} <small>{}</small>", pill, failures)

    @admin.display(description=_("credentials"))
    def credentials_masked(self, obj: Chip) -> str:
        rows = format_html_join(
            "\n",
            "<li>{}: <code>{}</code></li>",
            (
                (label, secret_mask(getattr(obj, name)) or "—")
                for name, label in credentials.SECRET_FIELDS.items()
            ),
        )
        return format_html("<ul>{}</ul>", rows)

    @admin.display(description=_("provider token"), boolean=True)
    def provider_token(self, obj: Chip) -> bool | None:
        if obj.provider not in credentials.PROVIDER_TOKEN_PROVIDERS:
            return None  # Meta: every delivery is signed
        return not credentials.chip_lacks_provider_token(obj)

    def get_fieldsets(self, request: HttpRequest, obj: Chip | None = None) -> list[Any]:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # Read-only pages would print each model field in the clear: show one
        # masked list instead.
        fieldsets = copy.deepcopy(fieldsets)
        for _name, options in fieldsets:
            fields = [f for f in options["fields"] if f not in credentials.SECRET_FIELDS]
            if len(fields) != len(options["fields"]):
                fields.append("credentials_masked")
            options["fields"] = fields
        return fieldsets

    def get_urls(self) -> list[URLPattern]:
        reveal = path(
            "<path:object_id>/credentials/",
            self.admin_site.admin_view(self.credentials_view),
            name="channels_chip_credentials",
        )
        return [reveal, *super().get_urls()]

    def has_reveal_credentials_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("channels.reveal_credentials_chip")

    def has_rotate_webhook_key_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("channels.rotate_webhook_key_chip")

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        chip = self.get_object(request, object_id)
        if (
            request.method == "GET"
            and chip is not None
            and credentials.chip_lacks_provider_token(chip)
        ):
            messages.warning(
                request,
                gettext(
                    "This chip accepts webhooks by the URL key alone: whoever has the URL "
                    "can speak as the provider. Set the webhook token at the provider and "
                    "fill in “webhook token” here."
                ),
            )
        extra_context = {
            **(extra_context or {}),
            "can_reveal_credentials": self.has_reveal_credentials_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def credentials_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET asks for confirmation; POST shows the clear values once, audited."""
        if not self.has_reveal_credentials_permission(request):
            raise PermissionDenied
        chip = self.get_object(request, object_id)
        if chip is None:
            raise Http404
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "chip": chip,
            "title": gettext("Reveal the credentials of %(chip)s") % {"chip": chip.name},
        }
        if request.method == "POST":
            url = request.build_absolute_uri(credentials.chip_webhook_path(chip))
            context["revealed"] = credentials.chip_credentials_reveal(
                chip=chip, actor=request.user, webhook_url=url
            )
        return TemplateResponse(request, "admin/channels/chip/credentials.html", context)

    @admin.display(description=_("health signals"))
    def health_pretty(self, obj: Chip) -> str:
        return pretty_json(obj.health)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Chip]:
        return pacing.chips_with_sent_today(super().get_queryset(request), now=timezone.now())

    @admin.display(description=_("sends today / cap"))
    def sends_today(self, obj: Chip) -> str:
        if obj.pk is None:
            return "—"
        now = timezone.now()
        sent = getattr(obj, "sent_today", None)
        if sent is None:
            sent = pacing.chip_sent_today(obj, now=now)
        today = now.astimezone(pacing.chip_zone(obj)).date()
        return f"{sent} / {pacing.chip_daily_cap(obj, today=today)}"

    @admin.display(description=_("last error"))
    def last_error_short(self, obj: Chip) -> str:
        return short(obj.last_error, 50)

    @admin.display(description=_("latest send errors"))
    def recent_errors(self, obj: Chip) -> str:
        from conversations.models import DeliveryAttempt

        if obj.pk is None:
            return "—"
        attempts = (
            DeliveryAttempt.objects.filter(chip=obj)
            .exclude(outcome=DeliveryAttempt.Outcome.SENT)
            .order_by("-started_at")[:10]
        )
        rows = format_html_join(
            "\n",
            "<li>{} · {} · HTTP {} {} · {}</li>",
            (
                (
                    timezone.localtime(a.started_at).strftime("%d/%m %H:%M:%S"),
                    a.get_outcome_display(),
                    a.http_status or "—",
                    a.error_code,
                    short(a.error, 120),
                )
                for a in attempts
            ),
        )
        return format_html("<ul>{}</ul>", rows) if rows else "—"

    def has_block_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("channels.block_chip")

    def has_reset_circuit_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("channels.reset_circuit_chip")

    @admin.action(description=_("Block (no prospecting or follow-up)"), permissions=["block"])
    def block_chips(self, request: HttpRequest, queryset: QuerySet[Chip]) -> None:
        blocked, paused = quarantine.chip_block(
            chips=queryset,
            reason=gettext("blocked by %(user)s") % {"user": request.user.get_username()},
        )
        audit_admin(
            request,
            action="chip_block",
            target=Chip,
            objects=queryset,
            count=blocked,
            detail={"campaigns_paused": paused},
        )
        self.message_user(
            request,
            gettext("%(blocked)d chip(s) blocked; %(paused)d campaign(s) paused.")
            % {"blocked": blocked, "paused": paused},
        )

    @admin.action(description=_("Unblock"), permissions=["block"])
    def unblock_chips(self, request: HttpRequest, queryset: QuerySet[Chip]) -> None:
        count = quarantine.chip_unblock(chips=queryset)
        audit_admin(request, action="chip_unblock", target=Chip, objects=queryset, count=count)
        self.message_user(
            request,
            ngettext(
                "%(count)d chip unblocked. Paused campaigns stay paused.",
                "%(count)d chips unblocked. Paused campaigns stay paused.",
                count,
            )
            % {"count": count},
        )

    @admin.action(description=_("Reset circuit breaker"), permissions=["reset_circuit"])
    def reset_circuit(self, request: HttpRequest, queryset: QuerySet[Chip]) -> None:
        from conversations.outbox import outbox_kick

        chips = list(queryset)
        for chip in chips:
            circuit.circuit_reset(chip=chip)
        count = len(chips)
        audit_admin(request, action="chip_reset_circuit", target=Chip, objects=chips)
        if count:
            outbox_kick()
        self.message_user(
            request,
            ngettext(
                "Circuit breaker reset on %(count)d chip.",
                "Circuit breaker reset on %(count)d chips.",
                count,
            )
            % {"count": count},
        )

    @admin.action(description=_("Rotate webhook key"), permissions=["rotate_webhook_key"])
    def rotate_webhook_key(self, request: HttpRequest, queryset: QuerySet[Chip]) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "title": gettext("Rotate webhook key"),
        }
        if request.POST.get("post") != "yes":
            context["chips"] = list(queryset)
            return TemplateResponse(
                request, "admin/channels/chip/rotate_webhook_key_confirmation.html", context
            )
        rotated = credentials.chip_webhook_key_rotate(chips=queryset, actor=request.user)
        context["rotated"] = [
            (chip, request.build_absolute_uri(credentials.chip_webhook_path(chip)))
            for chip in rotated
        ]
        return TemplateResponse(
            request, "admin/channels/chip/rotate_webhook_key_done.html", context
        )

    @admin.display(description=_("QR code"))
    def qr_code_display(self, obj: Chip) -> str:
        # Evolution sends a PNG data URL to scan, or only the raw pairing string,
        # which is drawn here: a string cannot be scanned.
        if not obj.qr_code:
            return "—"
        image = obj.qr_code
        if not image.startswith("data:image/"):
            image = qr_svg_data_uri(obj.qr_code)
        if image is None:
            return format_html("<code>{}</code>", obj.qr_code)
        return format_html(
            '<img src="{}" alt="{}" width="260" height="260"><br>{}',
            image,
            gettext("QR code"),
            gettext("Scan it with the chip's WhatsApp: Linked devices → Link a device."),
        )


def qr_svg_data_uri(code: str) -> str | None:
    """The QR code of a pairing string as an SVG data URL, drawn in the page's process.

    Always a full QR (WhatsApp reads no Micro QR), black on white with the
    quiet zone whatever the admin's theme, scaled by the <img> (viewBox).
    None when the text is too long for any QR code.
    """
    try:
        qr = segno.make_qr(code, error="m")
    except segno.DataOverflowError:
        return None
    return qr.svg_data_uri(omitsize=True, border=4, dark="#000", light="#fff")


class HasErrorFilter(admin.SimpleListFilter):
    title = _("error")
    parameter_name = "has_error"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", gettext("With error")), ("no", gettext("Without error"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.exclude(error="")
        if self.value() == "no":
            return queryset.filter(error="")
        return queryset


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    paginator = EstimatedCountPaginator
    list_display = [
        "id",
        "received_at",
        "provider",
        "chip_link",
        "event_type",
        "status",
        "attempts",
        "error_short",
    ]
    list_filter = ["provider", "event_type", "status", HasErrorFilter, "received_at"]
    list_select_related = ["chip"]
    search_fields = ["dedupe_key", "chip__name", "chip__phone"]
    show_full_result_count = False
    actions = ["reprocess_selected"]
    readonly_fields = [
        "chip",
        "provider",
        "event_type",
        "dedupe_key",
        "status",
        "error",
        "attempts",
        "received_at",
        "processed_at",
        "payload_pretty",
        "headers_pretty",
        "raw_body_redacted",
    ]
    exclude = ["payload", "headers", "raw_body"]

    @admin.display(description=_("chip"), ordering="chip__name")
    def chip_link(self, obj: WebhookEvent) -> str:
        url = reverse("admin:channels_chip_change", args=[obj.chip_id])
        return format_html('<a href="{}">{}</a>', url, obj.chip.name)

    @admin.display(description=_("error"))
    def error_short(self, obj: WebhookEvent) -> str:
        return short(obj.error)

    @admin.display(description=_("payload"))
    def payload_pretty(self, obj: WebhookEvent) -> str:
        # Events stored before credentials were stripped at intake still hold them.
        return pretty_json(mapping_redact(obj.payload))

    @admin.display(description=_("headers"))
    def headers_pretty(self, obj: WebhookEvent) -> str:
        return pretty_json(mapping_redact(obj.headers))

    @admin.display(description=_("raw body"))
    def raw_body_redacted(self, obj: WebhookEvent) -> str:
        return text_redact(obj.raw_body)

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("channels.change_webhookevent")

    @admin.action(description=_("Reprocess selected events"), permissions=["reprocess"])
    def reprocess_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        event_ids = list(queryset.values_list("pk", flat=True))
        counts = webhook_events_reprocess(event_ids=event_ids)
        audit_admin(
            request,
            action="webhook_event_reprocess",
            target=WebhookEvent,
            objects=event_ids,
            detail=counts,
        )
        summary = ", ".join(f"{status}: {count}" for status, count in sorted(counts.items()))
        total = sum(counts.values())
        level = messages.WARNING if counts.get("failed") else messages.SUCCESS
        self.message_user(
            request,
            ngettext(
                "%(count)d event reprocessed (%(summary)s).",
                "%(count)d events reprocessed (%(summary)s).",
                total,
            )
            % {"count": total, "summary": summary},
            level,
        )
        if invalid := counts.get(WebhookEvent.Status.INVALID):
            self.message_user(
                request,
                ngettext(
                    "%(count)d event is still invalid: its error says why.",
                    "%(count)d events are still invalid: each one's error says why.",
                    invalid,
                )
                % {"count": invalid},
                messages.WARNING,
            )
