from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from channels.models import Chip, WebhookEvent
from channels.services import webhook_events_reprocess
from core.admin_utils import URLFIELD_HTTPS, PhoneSearchMixin, ReadOnlyAdmin, pretty_json, short


@admin.register(Chip)
class ChipAdmin(PhoneSearchMixin, admin.ModelAdmin):
    formfield_overrides = URLFIELD_HTTPS
    list_display = [
        "name",
        "provider",
        "phone",
        "status",
        "circuit_state",
        "consecutive_failures",
        "can_prospect",
        "can_follow_up",
        "quality_rating",
        "last_sent_at",
        "agent_profile",
    ]
    list_filter = ["provider", "status", "circuit_state", "can_prospect", "can_follow_up"]
    list_select_related = ["agent_profile"]
    search_fields = ["name", "phone", "instance_id"]
    phone_search_fields = ("phone",)
    autocomplete_fields = ["agent_profile"]
    readonly_fields = [
        "webhook_url",
        "status_changed_at",
        "last_sent_at",
        "next_send_at",
        "circuit_state",
        "consecutive_failures",
        "circuit_opened_at",
        "circuit_retry_at",
        "circuit_open_count",
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
            "Conexão com o provedor",
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
            "Ritmo de envio",
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
                ]
            },
        ),
        (
            "Circuit breaker",
            {
                "fields": [
                    "circuit_state",
                    "consecutive_failures",
                    "circuit_opened_at",
                    "circuit_retry_at",
                    "circuit_open_count",
                ]
            },
        ),
        (
            "Saúde",
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

    @admin.display(description="webhook URL")
    def webhook_url(self, obj: Chip) -> str:
        if not obj.pk:
            return "— (saved chips get a secret URL)"
        return f"/webhooks/{obj.provider}/{obj.webhook_key}/"

    @admin.display(description="health signals")
    def health_pretty(self, obj: Chip) -> str:
        return pretty_json(obj.health)

    @admin.display(description="QR code")
    def qr_code_display(self, obj: Chip) -> str:
        # Evolution sends a PNG data URL to scan, or only the raw pairing string.
        if obj.qr_code.startswith("data:image/"):
            return format_html('<img src="{}" alt="QR code" width="260">', obj.qr_code)
        return format_html("<code>{}</code>", obj.qr_code) if obj.qr_code else "—"


class HasErrorFilter(admin.SimpleListFilter):
    title = "error"
    parameter_name = "has_error"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Com erro"), ("no", "Sem erro")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.exclude(error="")
        if self.value() == "no":
            return queryset.filter(error="")
        return queryset


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
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
        "raw_body",
    ]
    exclude = ["payload", "headers"]

    @admin.display(description="chip", ordering="chip__name")
    def chip_link(self, obj: WebhookEvent) -> str:
        url = reverse("admin:channels_chip_change", args=[obj.chip_id])
        return format_html('<a href="{}">{}</a>', url, obj.chip.name)

    @admin.display(description="error")
    def error_short(self, obj: WebhookEvent) -> str:
        return short(obj.error)

    @admin.display(description="payload")
    def payload_pretty(self, obj: WebhookEvent) -> str:
        return pretty_json(obj.payload)

    @admin.display(description="headers")
    def headers_pretty(self, obj: WebhookEvent) -> str:
        return pretty_json(obj.headers)

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("channels.change_webhookevent")

    @admin.action(description="Reprocess selected events", permissions=["reprocess"])
    def reprocess_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        counts = webhook_events_reprocess(event_ids=queryset.values_list("pk", flat=True))
        summary = ", ".join(f"{status}: {count}" for status, count in sorted(counts.items()))
        total = sum(counts.values())
        level = messages.WARNING if counts.get("failed") else messages.SUCCESS
        self.message_user(request, f"{total} evento(s) reprocessado(s) ({summary}).", level)
