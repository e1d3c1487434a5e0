from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

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

    @admin.display(description="steps", ordering="step_total")
    def step_count(self, obj: Flow) -> int:
        return obj.step_total


@admin.register(AgentProfile)
class AgentProfileAdmin(admin.ModelAdmin):
    list_display = ["name", "persona", "model", "temperature", "flow", "on_flow_end", "is_active"]
    list_filter = ["is_active", "on_flow_end"]
    list_select_related = ["flow"]
    search_fields = ["name", "persona"]
    autocomplete_fields = ["flow"]
    fieldsets = [
        (None, {"fields": ["name", "persona", "is_active"]}),
        ("Modelo (LLM)", {"fields": ["system_prompt", "model", "temperature", "history_window"]}),
        (
            "Fluxo de qualificação",
            {
                "fields": ["flow", "on_flow_end", "closing_message"],
                "description": "Com um fluxo, as perguntas roteirizadas vêm antes do LLM.",
            },
        ),
        (
            "Respostas automáticas (pt-BR)",
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
