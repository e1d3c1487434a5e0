from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from campaigns.audience import (
    MAX_ERRORS_SHOWN,
    AudienceFileError,
    audience_add_leads,
    audience_import,
)
from campaigns.models import WEEKDAY_CHOICES, Campaign, CampaignRecipient
from campaigns.preview import campaign_preview
from campaigns.selectors import campaign_progress, campaigns_with_counts
from campaigns.services import FINISHED, CampaignError, campaign_control
from conversations.models import Lead
from core.admin_utils import EstimatedCountPaginator, PhoneSearchMixin
from core.audit import audit_record
from core.models import AuditEntry

# Which permission each control needs (ops may pause and cancel; managers all).
CONTROL_PERMISSIONS = {
    "start": "campaigns.start_campaign",
    "resume": "campaigns.start_campaign",
    "pause": "campaigns.pause_campaign",
    "cancel": "campaigns.cancel_campaign",
}
CONTROL_LABELS = {
    "start": _("Start"),
    "pause": _("Pause"),
    "resume": _("Resume"),
    "cancel": _("Cancel"),
}
# The controls that make sense in each state.
CONTROLS_BY_STATUS = {
    Campaign.Status.DRAFT: ("start", "cancel"),
    Campaign.Status.SCHEDULED: ("start", "pause", "cancel"),
    Campaign.Status.RUNNING: ("pause", "cancel"),
    Campaign.Status.PAUSED: ("resume", "cancel"),
}


class CampaignForm(forms.ModelForm):
    send_weekdays = forms.MultipleChoiceField(
        label=_("Send days"),
        choices=WEEKDAY_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=_("None checked: every day."),
    )

    class Meta:
        model = Campaign
        fields = [
            "name",
            "kind",
            "agent_profile",
            "message_template",
            "chips",
            "scheduled_at",
            "time_zone",
            "send_weekdays",
            "send_window_start",
            "send_window_end",
            "follow_up_after_hours",
            "follow_up_texts",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.initial["send_weekdays"] = list(self.instance.send_weekdays or "")

    def clean_send_weekdays(self) -> str:
        return "".join(sorted(set(self.cleaned_data["send_weekdays"])))


class AudienceImportForm(forms.Form):
    file = forms.FileField(
        label=_("File"),
        help_text=_(
            "CSV or XLSX with a header row: phone (required), name, company, email "
            "and any other columns, which become message variables."
        ),
    )
    skip_invalid = forms.BooleanField(
        label=_("Import the valid rows even if there are invalid rows"),
        required=False,
        help_text=_("Unchecked: a file with any invalid row imports nothing."),
    )


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    change_form_template = "admin/campaigns/campaign/change_form.html"
    change_list_template = "admin/campaigns/campaign/change_list.html"
    list_display = [
        "name",
        "kind",
        "status",
        "scheduled_at",
        "progress_bar",
        "agent_profile",
    ]
    list_filter = ["status", "kind", "scheduled_at"]
    list_select_related = ["agent_profile"]
    search_fields = ["name"]
    filter_horizontal = ["chips"]
    autocomplete_fields = ["agent_profile"]
    actions = ["start_campaigns", "pause_campaigns", "resume_campaigns", "cancel_campaigns"]
    readonly_fields = [
        "status",
        "started_at",
        "paused_at",
        "paused_reason",
        "finished_at",
        "created_by",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "kind", "status", "paused_reason", "agent_profile"]}),
        (_("Message"), {"fields": ["message_template"]}),
        (_("Delivery"), {"fields": ["chips", "scheduled_at"]}),
        (
            _("Send window (on top of each chip's)"),
            {"fields": ["time_zone", "send_weekdays", "send_window_start", "send_window_end"]},
        ),
        (_("Follow-up"), {"fields": ["follow_up_after_hours", "follow_up_texts"]}),
        (
            _("History"),
            {
                "classes": ["collapse"],
                "fields": [
                    "started_at",
                    "paused_at",
                    "finished_at",
                    "created_by",
                    "created_at",
                    "updated_at",
                ],
            },
        ),
    ]

    # The change page's live panel shows these and keeps them current.
    LIVE_FIELDS = ("status", "paused_reason")

    def get_fieldsets(self, request: HttpRequest, obj: Campaign | None = None) -> list:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        return [
            (
                name,
                {**options, "fields": [f for f in options["fields"] if f not in self.LIVE_FIELDS]},
            )
            for name, options in fieldsets
        ]

    def save_model(self, request: HttpRequest, obj: Campaign, form, change: bool) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    # --- Progress on the changelist ---------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        return campaigns_with_counts(super().get_queryset(request))

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "progress_url": reverse("admin:campaigns_campaign_progress_list"),
        }
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("progress"))
    def progress_bar(self, obj: Campaign) -> str:
        done = obj.recipient_total - obj.recipient_unsent
        percent = round(100 * done / obj.recipient_total) if obj.recipient_total else 0
        # progress.js refreshes the numbers in place; the words stay as translated here.
        return format_html(
            '<div class="campaign-progress" data-campaign="{}">'
            '<progress max="100" value="{}"></progress> '
            '<span class="campaign-progress-text"><span data-progress="done">{}</span> / '
            '<span data-progress="total">{}</span> · <span data-progress="sent">{}</span> {}'
            "</span></div>",
            obj.pk,
            percent,
            done,
            obj.recipient_total,
            obj.recipient_sent,
            gettext("sent"),
        )

    # --- Controls: actions ---------------------------------------------------------------

    def has_start_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(CONTROL_PERMISSIONS["start"])

    def has_pause_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(CONTROL_PERMISSIONS["pause"])

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(CONTROL_PERMISSIONS["cancel"])

    def _control_many(
        self, request: HttpRequest, queryset: QuerySet[Campaign], action: str
    ) -> None:
        for campaign in queryset:
            self._control_one(request, campaign, action)

    def _control_one(self, request: HttpRequest, campaign: Campaign, action: str) -> None:
        try:
            result = campaign_control(
                campaign=campaign,
                action=action,
                source=AuditEntry.Source.ADMIN,
                actor=request.user,
            )
        except CampaignError as exc:
            self.message_user(request, f"{campaign.name}: {exc}", messages.ERROR)
            return
        self.message_user(request, f"{campaign.name}: {result.message}", messages.SUCCESS)

    @admin.action(
        description=_("Start (or schedule) the selected campaigns"), permissions=["start"]
    )
    def start_campaigns(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._control_many(request, queryset, "start")

    @admin.action(description=_("Pause the selected campaigns"), permissions=["pause"])
    def pause_campaigns(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._control_many(request, queryset, "pause")

    @admin.action(description=_("Resume the selected campaigns"), permissions=["start"])
    def resume_campaigns(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._control_many(request, queryset, "resume")

    @admin.action(description=_("Cancel the selected campaigns"), permissions=["cancel"])
    def cancel_campaigns(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._control_many(request, queryset, "cancel")

    # --- Controls: buttons, progress and preview pages --------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            *(
                path(
                    f"<int:pk>/{action}/",
                    wrap(require_POST(self.control_view)),
                    {"action": action},
                    name=f"campaigns_campaign_{action}",
                )
                for action in CONTROL_PERMISSIONS
            ),
            path(
                "<int:pk>/progress/",
                wrap(self.progress_view),
                name="campaigns_campaign_progress",
            ),
            path(
                "progress/",
                wrap(self.progress_list_view),
                name="campaigns_campaign_progress_list",
            ),
            path(
                "<int:pk>/import/",
                wrap(self.import_view),
                name="campaigns_campaign_import",
            ),
            path(
                "<int:pk>/preview/",
                wrap(self.preview_view),
                name="campaigns_campaign_preview",
            ),
            *super().get_urls(),
        ]

    def _campaign_for(self, request: HttpRequest, pk: int) -> Campaign:
        campaign = get_object_or_404(Campaign, pk=pk)
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        return campaign

    def control_view(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        campaign = self._campaign_for(request, pk)
        if not request.user.has_perm(CONTROL_PERMISSIONS[action]):
            raise PermissionDenied
        self._control_one(request, campaign, action)
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[pk]))

    def progress_view(self, request: HttpRequest, pk: int) -> JsonResponse:
        campaign = self._campaign_for(request, pk)
        return JsonResponse(campaign_progress(campaign).as_json())

    def progress_list_view(self, request: HttpRequest) -> JsonResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            ids = [int(pk) for pk in request.GET.get("ids", "").split(",") if pk][:200]
        except ValueError:
            return JsonResponse({"error": "ids must be integers"}, status=400)
        rows = campaigns_with_counts(Campaign.objects.filter(pk__in=ids))
        return JsonResponse(
            {
                str(c.pk): {
                    "status": c.status,
                    "status_label": str(c.get_status_display()),
                    "total": c.recipient_total,
                    "done": c.recipient_total - c.recipient_unsent,
                    "sent": c.recipient_sent,
                }
                for c in rows
            }
        )

    def preview_view(self, request: HttpRequest, pk: int) -> TemplateResponse:
        campaign = self._campaign_for(request, pk)
        return TemplateResponse(
            request,
            "admin/campaigns/campaign/preview.html",
            {
                **self.admin_site.each_context(request),
                "title": _("Preview: %(name)s") % {"name": campaign.name},
                "opts": self.model._meta,
                "original": campaign,
                "preview": campaign_preview(campaign),
            },
        )

    def import_view(self, request: HttpRequest, pk: int) -> TemplateResponse:
        campaign = get_object_or_404(Campaign, pk=pk)
        if not self.has_change_permission(request, campaign):
            raise PermissionDenied
        form = AudienceImportForm(request.POST or None, request.FILES or None)
        report = None
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                report = audience_import(
                    campaign=campaign,
                    name=upload.name,
                    content=upload.read(),
                    skip_invalid=form.cleaned_data["skip_invalid"],
                )
            except (AudienceFileError, CampaignError) as exc:
                form.add_error("file", str(exc))
            else:
                if report.imported:
                    audit_record(
                        action="campaign_audience_import",
                        source=AuditEntry.Source.ADMIN,
                        actor=request.user,
                        target=Campaign,
                        objects=[campaign],
                        detail={
                            "file": upload.name[:200],
                            "rows": report.rows,
                            "added": report.added,
                            "errors": report.error_count,
                        },
                    )
        return TemplateResponse(
            request,
            "admin/campaigns/campaign/import.html",
            {
                **self.admin_site.each_context(request),
                "title": _("Import audience: %(name)s") % {"name": campaign.name},
                "opts": self.model._meta,
                "original": campaign,
                "form": form,
                "report": report,
                "errors_shown": report.errors[:MAX_ERRORS_SHOWN] if report else [],
                "preview_url": reverse("admin:campaigns_campaign_preview", args=[campaign.pk]),
            },
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None
    ) -> HttpResponse:
        campaign = Campaign.objects.filter(pk=object_id).first() if object_id.isdigit() else None
        extra_context = extra_context or {}
        if campaign is not None:
            # Every control the user may use, shown in the states it applies
            # to: progress.js shows and hides them as the status changes (an
            # automatic pause, the completion) without a reload.
            extra_context["campaign_controls"] = [
                {
                    "action": action,
                    "label": CONTROL_LABELS[action],
                    "url": reverse(f"admin:campaigns_campaign_{action}", args=[campaign.pk]),
                    "when": " ".join(
                        status
                        for status, actions in CONTROLS_BY_STATUS.items()
                        if action in actions
                    ),
                    "shown": action in CONTROLS_BY_STATUS.get(campaign.status, ()),
                }
                for action in CONTROL_LABELS
                if request.user.has_perm(CONTROL_PERMISSIONS[action])
            ]
            extra_context["progress"] = campaign_progress(campaign)
            extra_context["progress_url"] = reverse(
                "admin:campaigns_campaign_progress", args=[campaign.pk]
            )
            extra_context["preview_url"] = reverse(
                "admin:campaigns_campaign_preview", args=[campaign.pk]
            )
            if self.has_change_permission(request, campaign) and campaign.status not in FINISHED:
                extra_context["import_url"] = reverse(
                    "admin:campaigns_campaign_import", args=[campaign.pk]
                )
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(CampaignRecipient)
class CampaignRecipientAdmin(PhoneSearchMixin, admin.ModelAdmin):
    paginator = EstimatedCountPaginator
    list_display = ["id", "campaign", "lead", "chip", "status", "skip_reason", "updated_at"]
    list_filter = ["status", "skip_reason", "campaign"]
    list_select_related = ["campaign", "lead", "chip"]
    search_fields = ["lead__phone", "lead__name", "campaign__name"]
    phone_search_fields = ("lead__phone",)
    raw_id_fields = ["lead", "message", "chip", "conversation"]
    autocomplete_fields = ["campaign"]
    show_full_result_count = False
    readonly_fields = ["created_at", "updated_at"]


# --- "Adicionar à campanha" on the leads list ----------------------------------------------
# Registered from here onto the leads admin: conversations never imports campaigns.


class AddToCampaignForm(forms.Form):
    campaign = forms.ModelChoiceField(
        label=_("Campaign"),
        queryset=Campaign.objects.exclude(status__in=FINISHED).order_by("-created_at"),
    )


@admin.action(description=_("Add to campaign"), permissions=["add_to_campaign"])
def add_to_campaign(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Lead]
) -> TemplateResponse | None:
    form = AddToCampaignForm(request.POST if request.POST.get("post") == "yes" else None)
    if form.is_bound and form.is_valid():
        campaign = form.cleaned_data["campaign"]
        lead_ids = list(queryset.values_list("pk", flat=True))
        try:
            report = audience_add_leads(campaign=campaign, lead_ids=lead_ids)
        except CampaignError as exc:
            modeladmin.message_user(request, str(exc), messages.ERROR)
            return None
        audit_record(
            action="campaign_audience_add",
            source=AuditEntry.Source.ADMIN,
            actor=request.user,
            target=Campaign,
            objects=[campaign],
            detail={"leads": len(lead_ids), "added": report.added},
        )
        modeladmin.message_user(
            request,
            _(
                "%(added)s lead(s) added to the campaign %(name)s; %(already)s already "
                "in it; %(queued)s message(s) queued."
            )
            % {
                "added": report.added,
                "name": campaign.name,
                "already": report.already_in_campaign,
                "queued": report.queued,
            },
        )
        return None
    return TemplateResponse(
        request,
        "admin/campaigns/add_to_campaign.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": _("Add to campaign"),
            "opts": modeladmin.model._meta,
            "form": form,
            "leads": queryset[:50],
            "lead_count": queryset.count(),
            "selected": queryset.values_list("pk", flat=True),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        },
    )


def _register_lead_action() -> None:
    lead_admin = admin.site._registry.get(Lead)
    if lead_admin is None or "add_to_campaign" in (lead_admin.actions or []):
        return
    lead_admin.actions = [*(lead_admin.actions or []), add_to_campaign]
    lead_admin.has_add_to_campaign_permission = lambda request: request.user.has_perm(
        "campaigns.change_campaign"
    )


_register_lead_action()
