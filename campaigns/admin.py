from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from campaigns.models import Campaign, CampaignRecipient
from core.admin_utils import EstimatedCountPaginator, PhoneSearchMixin


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "kind",
        "status",
        "scheduled_at",
        "started_at",
        "recipients_link",
        "sent_count",
        "agent_profile",
    ]
    list_filter = ["status", "kind", "scheduled_at"]
    list_select_related = ["agent_profile"]
    search_fields = ["name"]
    filter_horizontal = ["chips"]
    autocomplete_fields = ["agent_profile"]
    readonly_fields = [
        "started_at",
        "paused_at",
        "paused_reason",
        "finished_at",
        "created_by",
        "created_at",
        "updated_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                recipient_count=Count("recipients"),
                sent_total=Count(
                    "recipients", filter=Q(recipients__status=CampaignRecipient.Status.SENT)
                ),
            )
        )

    def save_model(self, request: HttpRequest, obj: Campaign, form, change: bool) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.display(description="recipients", ordering="recipient_count")
    def recipients_link(self, obj: Campaign) -> str:
        url = reverse("admin:campaigns_campaignrecipient_changelist")
        return format_html(
            '<a href="{}?campaign__id__exact={}">{}</a>', url, obj.pk, obj.recipient_count
        )

    @admin.display(description="sent", ordering="sent_total")
    def sent_count(self, obj: Campaign) -> int:
        return obj.sent_total


@admin.register(CampaignRecipient)
class CampaignRecipientAdmin(PhoneSearchMixin, admin.ModelAdmin):
    paginator = EstimatedCountPaginator
    list_display = ["id", "campaign", "lead", "chip", "status", "skip_reason", "updated_at"]
    list_filter = ["status", "campaign"]
    list_select_related = ["campaign", "lead", "chip"]
    search_fields = ["lead__phone", "lead__name", "campaign__name"]
    phone_search_fields = ("lead__phone",)
    raw_id_fields = ["lead", "message", "chip"]
    autocomplete_fields = ["campaign"]
    show_full_result_count = False
    readonly_fields = ["created_at", "updated_at"]
