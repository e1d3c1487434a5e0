from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from channels import circuit, pacing, quarantine
from channels.models import Chip, WebhookEvent
from channels.services import webhook_events_reprocess
from core.admin_utils import (
    URLFIELD_HTTPS,
    EstimatedCountPaginator,
    PhoneSearchMixin,
    ReadOnlyAdmin,
    pretty_json,
    short,
)


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
        "sends_today",
        "can_prospect",
        "can_follow_up",
        "quality_rating",
        "last_sent_at",
        "last_error_short",
        "agent_profile",
    ]
    list_filter = ["provider", "status", "circuit_state", "can_prospect", "can_follow_up"]
    actions = ["block_chips", "unblock_chips", "reset_circuit"]
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
                    "sends_today",
                    "recent_errors",
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

    def get_queryset(self, request: HttpRequest) -> QuerySet[Chip]:
        return pacing.chips_with_sent_today(super().get_queryset(request), now=timezone.now())

    @admin.display(description="envios hoje / limite")
    def sends_today(self, obj: Chip) -> str:
        if obj.pk is None:
            return "—"
        now = timezone.now()
        sent = getattr(obj, "sent_today", None)
        if sent is None:
            sent = pacing.chip_sent_today(obj, now=now)
        today = now.astimezone(pacing.chip_zone(obj)).date()
        return f"{sent} / {pacing.chip_daily_cap(obj, today=today)}"

    @admin.display(description="último erro")
    def last_error_short(self, obj: Chip) -> str:
        return short(obj.last_error, 50)

    @admin.display(description="últimos erros de envio")
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

    @admin.action(description="Bloquear (sem prospecção nem follow-up)", permissions=["block"])
    def block_chips(self, request: HttpRequest, queryset: QuerySet[Chip]) -> None:
        blocked, paused = quarantine.chip_block(
            chips=queryset, reason=f"bloqueado por {request.user.get_username()}"
        )
        self.message_user(
            request, f"{blocked} chip(s) bloqueado(s); {paused} campanha(s) pausada(s)."
        )

    @admin.action(description="Desbloquear", permissions=["block"])
    def unblock_chips(self, request: HttpRequest, queryset: QuerySet[Chip]) -> None:
        count = quarantine.chip_unblock(chips=queryset)
        self.message_user(
            request,
            f"{count} chip(s) desbloqueado(s). Campanhas pausadas continuam pausadas.",
        )

    @admin.action(description="Reiniciar circuit breaker", permissions=["reset_circuit"])
    def reset_circuit(self, request: HttpRequest, queryset: QuerySet[Chip]) -> None:
        from conversations.outbox import outbox_kick

        count = 0
        for chip in queryset:
            circuit.circuit_reset(chip=chip)
            count += 1
        if count:
            outbox_kick()
        self.message_user(request, f"Circuit breaker reiniciado em {count} chip(s).")

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
