from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from agent.models import AgentProfile, AgentRun, Flow, FlowStep
from core.admin_utils import EstimatedCountPaginator, ReadOnlyAdmin, pretty_json, short


class FlowStepInline(admin.StackedInline):
    model = FlowStep
    extra = 0
    fields = ["order", "key", "question", "validator", "options", "error_message", "next_step"]


@admin.register(Flow)
class FlowAdmin(admin.ModelAdmin):
    list_display = ["name", "step_count", "updated_at"]
    search_fields = ["name"]
    inlines = [FlowStepInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Flow]:
        return super().get_queryset(request).annotate(step_total=Count("steps"))

    @admin.display(description=_("steps"), ordering="step_total")
    def step_count(self, obj: Flow) -> int:
        return obj.step_total


@admin.register(AgentProfile)
class AgentProfileAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "persona",
        "model",
        "temperature",
        "flow",
        "on_flow_end",
        "follow_up_enabled",
        "is_active",
    ]
    list_filter = ["is_active", "on_flow_end", "follow_up_enabled"]
    list_select_related = ["flow"]
    search_fields = ["name", "persona"]
    autocomplete_fields = ["flow"]
    fieldsets = [
        (None, {"fields": ["name", "persona", "is_active"]}),
        (_("Model (LLM)"), {"fields": ["system_prompt", "model", "temperature", "history_window"]}),
        (
            _("Qualification flow"),
            {
                "fields": ["flow", "on_flow_end", "closing_message"],
                "description": _("With a flow, the scripted questions come before the LLM."),
            },
        ),
        (
            _("Automatic replies"),
            {
                "fields": [
                    "fallback_reply",
                    "handoff_on_failure",
                    "handoff_keywords",
                    "handoff_reply",
                    "opt_out_keywords",
                    "opt_out_confirmation",
                ]
            },
        ),
        (
            _("Flow follow-up"),
            {
                "fields": [
                    "follow_up_enabled",
                    "follow_up_after_hours",
                    "follow_up_max",
                    "follow_up_texts",
                ],
                "description": _(
                    "A reminder to a lead who stopped answering a flow question. It leaves "
                    "through the conversation's chip, within the chip's send window and "
                    "only if the chip may follow up; never after a reply, an opt-out, a "
                    "handoff, or in a conversation with a human or closed."
                ),
            },
        ),
    ]


@admin.register(AgentRun)
class AgentRunAdmin(ReadOnlyAdmin):
    paginator = EstimatedCountPaginator
    list_display = [
        "id",
        "started_at",
        "conversation",
        "profile",
        "kind",
        "trigger",
        "outcome",
        "latency_ms",
        "prompt_tokens",
        "completion_tokens",
        "error_short",
    ]
    list_filter = ["kind", "trigger", "outcome", "profile"]
    list_select_related = ["conversation__lead", "conversation__chip", "profile"]
    search_fields = ["conversation__lead__phone", "conversation__lead__name"]
    show_full_result_count = False
    exclude = ["tool_calls"]
    readonly_fields = [
        "conversation",
        "message",
        "profile",
        "kind",
        "trigger",
        "outcome",
        "model",
        "latency_ms",
        "prompt_tokens",
        "completion_tokens",
        "tool_calls_pretty",
        "error",
        "started_at",
        "finished_at",
    ]

    @admin.display(description="error")
    def error_short(self, obj: AgentRun) -> str:
        return short(obj.error, 40)

    @admin.display(description="tool calls")
    def tool_calls_pretty(self, obj: AgentRun) -> str:
        return pretty_json(obj.tool_calls)
