from django.contrib import admin
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from agent import services as agent_services
from conversations import outbox
from conversations.models import Conversation, DeliveryAttempt, Handoff, Lead, Message
from core.admin_utils import (
    URLFIELD_HTTPS,
    EstimatedCountPaginator,
    PhoneSearchMixin,
    pretty_json,
    short,
)


@admin.register(Lead)
class LeadAdmin(PhoneSearchMixin, admin.ModelAdmin):
    paginator = EstimatedCountPaginator
    list_display = ["__str__", "phone", "name", "email", "company", "opted_out", "created_at"]
    list_filter = ["opted_out", "source", "created_at"]
    search_fields = ["phone", "name", "email", "company"]
    phone_search_fields = ("phone",)
    show_full_result_count = False
    readonly_fields = ["opted_out_at", "attributes_pretty", "created_at", "updated_at"]
    exclude = ["attributes"]

    @admin.display(description="attributes")
    def attributes_pretty(self, obj: Lead) -> str:
        return pretty_json(obj.attributes)


class MessageInline(admin.TabularInline):
    model = Message
    fk_name = "conversation"
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["created_at"]
    fields = ["created_at", "direction", "purpose", "kind", "body", "status", "outcome"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Conversation | None = None) -> bool:
        return False


class HandoffInline(admin.TabularInline):
    model = Handoff
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["created_at", "reason", "status", "assigned_to", "note", "resolved_at"]
    readonly_fields = ["created_at", "resolved_at"]
    raw_id_fields = ["assigned_to"]


@admin.register(Conversation)
class ConversationAdmin(PhoneSearchMixin, admin.ModelAdmin):
    paginator = EstimatedCountPaginator
    list_display = [
        "id",
        "lead",
        "chip",
        "status",
        "controlled_by",
        "agent_paused",
        "flow_step",
        "last_message_at",
        "error_short",
    ]
    list_filter = ["status", "controlled_by", "agent_paused", "chip"]
    list_select_related = ["lead", "chip"]
    search_fields = ["lead__phone", "lead__name", "external_id"]
    phone_search_fields = ("lead__phone",)
    raw_id_fields = ["lead"]
    autocomplete_fields = ["agent_profile"]
    show_full_result_count = False
    inlines = [MessageInline, HandoffInline]
    readonly_fields = [
        "flow_data_pretty",
        "context_pretty",
        "last_message_at",
        "last_inbound_at",
        "last_outbound_at",
        "last_error",
        "last_error_at",
        "paused_at",
        "created_at",
        "updated_at",
        "closed_at",
    ]
    exclude = ["flow_data", "context"]
    actions = ["reprocess_last_message"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return super().get_queryset(request).select_related("lead", "chip", "agent_profile")

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.reprocess_conversation")

    @admin.action(description="Reprocessar a última mensagem do lead", permissions=["reprocess"])
    def reprocess_last_message(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> None:
        last = [agent_services.conversation_last_inbound(conversation=c) for c in queryset]
        report = agent_services.messages_reprocess_enqueue(messages=[m for m in last if m])
        self.message_user(
            request,
            f"{report.queued} conversa(s) enviada(s) para o agente responder; "
            f"{report.answered} já respondida(s); {last.count(None)} sem mensagem do lead.",
        )

    @admin.display(description="last error")
    def error_short(self, obj: Conversation) -> str:
        return short(obj.last_error, 40)

    @admin.display(description="flow data")
    def flow_data_pretty(self, obj: Conversation) -> str:
        return pretty_json(obj.flow_data)

    @admin.display(description="context")
    def context_pretty(self, obj: Conversation) -> str:
        return pretty_json(obj.context)


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fk_name = "message"
    extra = 0
    can_delete = False
    ordering = ["-started_at"]
    fields = [
        "started_at",
        "chip",
        "outcome",
        "http_status",
        "error_code",
        "error",
        "duration_ms",
        "provider_message_id",
    ]
    readonly_fields = fields
    verbose_name_plural = "tentativas de envio"

    def has_add_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(PhoneSearchMixin, admin.ModelAdmin):
    paginator = EstimatedCountPaginator
    formfield_overrides = URLFIELD_HTTPS
    list_display = [
        "id",
        "created_at",
        "direction",
        "lead_link",
        "chip",
        "purpose",
        "kind",
        "body_short",
        "status",
        "outcome",
        "attempts",
        "error_short",
    ]
    list_filter = ["direction", "status", "purpose", "outcome", "kind", "chip"]
    list_select_related = ["conversation__lead", "chip"]
    search_fields = ["conversation__lead__phone", "conversation__lead__name", "provider_message_id"]
    phone_search_fields = ("conversation__lead__phone",)
    raw_id_fields = ["conversation", "reply_to", "campaign", "webhook_event", "sent_by"]
    show_full_result_count = False
    actions = ["retry_now", "cancel_messages", "reprocess_messages", "reprocess_messages_force"]
    inlines = [DeliveryAttemptInline]
    readonly_fields = [
        "outcome",
        "provider_message_id",
        "attempts",
        "next_attempt_at",
        "lease_expires_at",
        "last_error",
        "provider_timestamp",
        "processed_at",
        "sent_at",
        "delivered_at",
        "read_at",
        "failed_at",
        "created_at",
        "updated_at",
    ]

    @admin.display(description="lead", ordering="conversation__lead__phone")
    def lead_link(self, obj: Message) -> str:
        lead = obj.conversation.lead
        url = reverse("admin:conversations_lead_change", args=[lead.pk])
        return format_html('<a href="{}">{}</a>', url, lead)

    @admin.display(description="body")
    def body_short(self, obj: Message) -> str:
        return short(obj.body, 50)

    @admin.display(description="last error")
    def error_short(self, obj: Message) -> str:
        return short(obj.last_error, 40)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.retry_message")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.cancel_message")

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.reprocess_message")

    @admin.action(description="Reprocessar (agente responde de novo)", permissions=["reprocess"])
    def reprocess_messages(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        report = agent_services.messages_reprocess_enqueue(messages=list(queryset))
        self.message_user(
            request,
            f"{report.queued} mensagem(ns) enviada(s) para o agente responder; "
            f"{report.answered} já respondida(s) (nenhuma resposta duplicada); "
            f"{report.not_inbound} ignorada(s) por não serem do lead.",
        )

    @admin.action(
        description="Reprocessar forçando nova resposta (mesmo se já respondida)",
        permissions=["reprocess"],
    )
    def reprocess_messages_force(
        self, request: HttpRequest, queryset: QuerySet[Message]
    ) -> TemplateResponse | None:
        # A second reply to the lead is the one thing reprocessing otherwise
        # never does: confirm first, the way delete_selected does.
        inbound = queryset.filter(direction=Message.Direction.INBOUND).select_related(
            "conversation__lead"
        )
        if request.POST.get("post") == "yes":
            report = agent_services.messages_reprocess_enqueue(messages=list(inbound), force=True)
            self.message_user(
                request, f"{report.queued} mensagem(ns) enviada(s) para o agente responder de novo."
            )
            return None
        return TemplateResponse(
            request,
            "admin/conversations/message/reprocess_force_confirmation.html",
            {
                **self.admin_site.each_context(request),
                "title": "Reprocessar forçando nova resposta",
                "opts": self.model._meta,
                "inbound": inbound,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            },
        )

    @admin.action(description="Reenviar agora", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        count = outbox.outbox_retry_now(messages=queryset)
        skipped = queryset.count() - count
        self.message_user(
            request,
            f"{count} mensagem(ns) de volta à fila; {skipped} ignorada(s) "
            "(recebidas, já enviadas, em envio ou canceladas).",
        )

    @admin.action(description="Cancelar envio", permissions=["cancel"])
    def cancel_messages(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        count = outbox.outbox_cancel(
            messages=queryset, reason=f"Cancelada por {request.user.get_username()}"
        )
        skipped = queryset.count() - count
        self.message_user(
            request,
            f"{count} mensagem(ns) cancelada(s); {skipped} ignorada(s) "
            "(recebidas, já enviadas ou em envio).",
        )


@admin.register(Handoff)
class HandoffAdmin(PhoneSearchMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "created_at",
        "conversation",
        "lead",
        "reason",
        "status",
        "assigned_to",
        "resolved_at",
    ]
    list_filter = ["status", "reason", "created_at"]
    list_select_related = ["conversation__lead", "conversation__chip", "assigned_to"]
    search_fields = ["conversation__lead__phone", "conversation__lead__name"]
    phone_search_fields = ("conversation__lead__phone",)
    raw_id_fields = ["conversation", "requested_by", "assigned_to"]
    readonly_fields = ["notified_at", "created_at", "accepted_at", "resolved_at"]

    @admin.display(description="lead", ordering="conversation__lead__name")
    def lead(self, obj: Handoff) -> Lead:
        return obj.conversation.lead
