from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import F, Min, Q, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from conversations import outbox
from conversations.chatwoot_mirror import chatwoot_mirror_retry
from conversations.models import (
    ChatwootMirror,
    Conversation,
    DeliveryAttempt,
    Handoff,
    Lead,
    Message,
    OwnerChange,
)
from conversations.ownership import OwnershipError, conversation_set_owner
from conversations.reprocessing import conversation_last_inbound, messages_reprocess
from conversations.retention import lead_anonymize
from core.admin_utils import (
    EstimatedCountPaginator,
    PhoneInputMixin,
    PhoneSearchMixin,
    pretty_json,
    short,
)
from core.audit import audit_admin, audit_record
from core.dashboard import awaiting_reply_conversations
from core.models import AuditEntry


@admin.register(Lead)
class LeadAdmin(PhoneInputMixin, PhoneSearchMixin, admin.ModelAdmin):
    paginator = EstimatedCountPaginator
    list_display = ["__str__", "phone", "name", "email", "company", "opted_out", "created_at"]
    list_filter = ["opted_out", "source", "created_at"]
    search_fields = ["phone", "name", "email", "company"]
    phone_search_fields = ("phone",)
    show_full_result_count = False
    readonly_fields = [
        "opted_out_at",
        "conversations_links",
        "attributes_pretty",
        "created_at",
        "updated_at",
    ]
    exclude = ["attributes"]
    actions = ["anonymize_leads"]

    @admin.display(description=_("conversations"))
    def conversations_links(self, obj: Lead) -> str:
        conversations = list(obj.conversations.select_related("chip").order_by("-created_at"))
        if not conversations:
            return "—"
        return format_html_join(
            mark_safe("<br>"),
            '<a href="{}">Conversa #{}</a> via {} ({})',
            (
                (
                    reverse("admin:conversations_conversation_change", args=[c.pk]),
                    c.pk,
                    c.chip.name,
                    c.get_status_display(),
                )
                for c in conversations
            ),
        )

    @admin.display(description=_("attributes"))
    def attributes_pretty(self, obj: Lead) -> str:
        return pretty_json(obj.attributes)

    def has_anonymize_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.anonymize_lead")

    @admin.action(description=_("Anonymize lead (LGPD)"), permissions=["anonymize"])
    def anonymize_leads(
        self, request: HttpRequest, queryset: QuerySet[Lead]
    ) -> TemplateResponse | None:
        # Erasing a person cannot be undone: confirm first, the way delete_selected does.
        leads = list(queryset)
        if request.POST.get("post") != "yes":
            return TemplateResponse(
                request,
                "admin/conversations/lead/anonymize_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Anonimizar leads",
                    "opts": self.model._meta,
                    "leads": leads,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                },
            )
        totals: dict[str, int] = {}
        for lead in leads:
            for key, count in lead_anonymize(lead=lead).items():
                totals[key] = totals.get(key, 0) + count
        audit_admin(request, action="lead_anonymize", target=Lead, objects=leads, detail=totals)
        self.message_user(
            request,
            gettext(
                "%(leads)d lead(s) anonymized; %(messages)d message(s) had their text erased. "
                "The statistics were kept."
            )
            % {"leads": len(leads), "messages": totals.get("messages", 0)},
        )
        return None


class MessageInline(admin.TabularInline):
    model = Message
    fk_name = "conversation"
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["created_at"]
    fields = [
        "created_at",
        "direction",
        "purpose",
        "kind",
        "body",
        "status",
        "outcome",
        "response_time",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Conversation | None = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        # What the lead felt, per turn: from its last message's arrival (the
        # replies' reply_to) to the provider accepting the first part of the answer.
        return super().get_queryset(request).annotate(first_reply_sent_at=Min("replies__sent_at"))

    @admin.display(description=_("Response time"))
    def response_time(self, obj: Message) -> str:
        sent_at = getattr(obj, "first_reply_sent_at", None)
        if obj.direction != Message.Direction.INBOUND or sent_at is None:
            return ""
        return f"{(sent_at - obj.arrived_at).total_seconds():.1f} s"


class HandoffInline(admin.TabularInline):
    model = Handoff
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["created_at", "reason", "status", "assigned_to", "note", "resolved_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Conversation | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Conversation | None = None) -> bool:
        return False


class OwnerChangeInline(admin.TabularInline):
    model = OwnerChange
    extra = 0
    can_delete = False
    ordering = ["-created_at", "-id"]
    fields = ["created_at", "previous", "owner", "actor_label", "reason"]
    readonly_fields = fields
    verbose_name_plural = _("owner history")

    def has_add_permission(self, request: HttpRequest, obj: Conversation | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Conversation | None = None) -> bool:
        return False


# (action name, owner, description, reason, audit action)
OWNER_ACTIONS = [
    ("take_over", Conversation.ControlledBy.HUMAN, _("Take over"), _("SDR took over")),
    (
        "give_back",
        Conversation.ControlledBy.AGENT,
        _("Give back to the agent"),
        _("Given back to the agent"),
    ),
    ("pause_agent", Conversation.ControlledBy.PAUSED, _("Pause the agent"), _("Agent paused")),
    ("close", Conversation.ControlledBy.CLOSED, _("Close"), _("Conversation closed")),
]


def conversations_set_owner_from_admin(
    *, request: HttpRequest, conversations: list[Conversation], action: str
) -> tuple[int, int]:
    """One owner action from the admin, audited. Returns (changed, refused)."""
    owner, reason = next((a[1], a[3]) for a in OWNER_ACTIONS if a[0] == action)
    changed, refused = [], 0
    for conversation in conversations:
        try:
            change = conversation_set_owner(
                conversation=conversation, owner=owner, reason=str(reason), actor=request.user
            )
        except OwnershipError:
            refused += 1
            continue
        if change is not None:
            changed.append(conversation)
    audit_record(
        action=f"conversation_{action}",
        source=AuditEntry.Source.ADMIN,
        actor=request.user,
        target=Conversation,
        objects=changed,
    )
    return len(changed), refused


def _owner_action(name: str, description: Any) -> Any:
    def action(
        self: "ConversationAdmin", request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> None:
        changed, refused = conversations_set_owner_from_admin(
            request=request, conversations=list(queryset), action=name
        )
        self.message_user(
            request,
            _("%(action)s: %(changed)d conversation(s) changed; %(refused)d already closed.")
            % {"action": description, "changed": changed, "refused": refused},
        )

    action.__name__ = name
    return admin.action(description=description, permissions=["take_over"])(action)


@admin.register(Conversation)
class ConversationAdmin(PhoneSearchMixin, admin.ModelAdmin):
    paginator = EstimatedCountPaginator
    list_display = [
        "id",
        "lead",
        "chip",
        "status",
        "controlled_by",
        "owner_changed_at",
        "flow_step_label",
        "last_message_at",
        "error_short",
    ]
    list_filter = ["status", "controlled_by", "chip"]
    list_select_related = ["lead", "chip"]
    search_fields = ["lead__phone", "lead__name", "external_id"]
    phone_search_fields = ("lead__phone",)
    raw_id_fields = ["lead"]
    autocomplete_fields = ["agent_profile"]
    show_full_result_count = False
    inlines = [MessageInline, HandoffInline, OwnerChangeInline]
    readonly_fields = [
        # The owner changes only through conversations.ownership (the actions
        # and the chat page), never by editing these.
        "status",
        "controlled_by",
        "owner_changed_at",
        "owner_changed_by",
        "owner_reason",
        "human_until",
        "agent_paused",
        "paused_reason",
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
    actions = [
        "reprocess_last_message",
        *(_owner_action(name, description) for name, _o, description, _r in OWNER_ACTIONS),
    ]
    change_form_template = "admin/conversations/conversation/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return super().get_queryset(request).select_related("lead", "chip", "agent_profile")

    def get_urls(self) -> list[Any]:
        from conversations.sdr_views import chat_view, queue_view

        return [
            path("queue/", self.admin_site.admin_view(queue_view), name="conversations_queue"),
            path(
                "<int:conversation_id>/chat/",
                self.admin_site.admin_view(chat_view),
                name="conversations_conversation_chat",
            ),
            *super().get_urls(),
        ]

    def has_take_over_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.take_over_conversation")

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.reprocess_conversation")

    @admin.action(description=_("Reprocess the lead's last message"), permissions=["reprocess"])
    def reprocess_last_message(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> None:
        last = [conversation_last_inbound(conversation=c) for c in queryset]
        report = messages_reprocess(messages=[m for m in last if m])
        audit_admin(
            request,
            action="conversation_reprocess",
            target=Conversation,
            objects=queryset,
            detail={"queued": report.queued, "answered": report.answered},
        )
        self.message_user(
            request,
            gettext(
                "%(queued)d conversation(s) sent to the agent to answer; %(answered)d already "
                "answered; %(empty)d without a lead message."
            )
            % {"queued": report.queued, "answered": report.answered, "empty": last.count(None)},
        )

    @admin.display(description=_("flow step"), ordering="flow_step")
    def flow_step_label(self, obj: Conversation) -> str:
        # "__done__" is the flow engine's end marker, not something to show.
        if obj.flow_step == "__done__":
            return gettext("finished")
        return obj.flow_step or "—"

    @admin.display(description=_("last error"))
    def error_short(self, obj: Conversation) -> str:
        return short(obj.last_error, 40)

    @admin.display(description=_("flow data"))
    def flow_data_pretty(self, obj: Conversation) -> str:
        return pretty_json(obj.flow_data)

    @admin.display(description=_("context"))
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
    verbose_name_plural = _("send attempts")

    def has_add_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False


class AwaitingReplyFilter(admin.SimpleListFilter):
    """Lead messages nobody answered yet in conversations the agent should answer."""

    title = _("waiting for an answer")
    parameter_name = "aguardando"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("sim", gettext("Lead messages waiting for an answer"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> QuerySet[Message]:
        if self.value() != "sim":
            return queryset
        return (
            queryset.filter(
                direction=Message.Direction.INBOUND,
                conversation__in=awaiting_reply_conversations(),
            )
            .filter(
                Q(conversation__last_outbound_at__isnull=True)
                | Q(created_at__gt=F("conversation__last_outbound_at"))
            )
            .exclude(status=Message.Status.IGNORED)
        )


class ChatwootMirrorFilter(admin.SimpleListFilter):
    """Messages by their mirror in Chatwoot: waiting (the backlog), failed, mirrored."""

    title = _("Chatwoot")
    parameter_name = "chatwoot"
    _STATES = {
        "pendente": (ChatwootMirror.State.PENDING, ChatwootMirror.State.SENDING),
        "falhou": (ChatwootMirror.State.FAILED,),
        "espelhada": (ChatwootMirror.State.DONE,),
    }

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("pendente", _("Waiting for Chatwoot")),
            ("falhou", _("Refused by Chatwoot")),
            ("espelhada", _("Mirrored in Chatwoot")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> QuerySet[Message]:
        states = self._STATES.get(self.value() or "")
        if states is None:
            return queryset
        return queryset.filter(chatwoot_mirror__state__in=states)


@admin.register(Message)
class MessageAdmin(PhoneSearchMixin, admin.ModelAdmin):
    paginator = EstimatedCountPaginator
    # Body, status and outcome first after who and when: they must fit at
    # 1440 px; purpose, kind and attempts are filters and on the page.
    list_display = [
        "id",
        "created_at",
        "direction",
        "lead_link",
        "body_short",
        "status",
        "outcome",
        "chip",
        "error_short",
    ]
    list_filter = [
        AwaitingReplyFilter,
        ChatwootMirrorFilter,
        "direction",
        "status",
        "purpose",
        "outcome",
        "kind",
        "chip",
    ]
    list_select_related = ["conversation__lead", "chip"]
    search_fields = ["conversation__lead__phone", "conversation__lead__name", "provider_message_id"]
    phone_search_fields = ("conversation__lead__phone",)
    show_full_result_count = False
    actions = [
        "retry_now",
        "cancel_messages",
        "reprocess_messages",
        "reprocess_messages_force",
        "chatwoot_retry",
    ]
    inlines = [DeliveryAttemptInline]
    # Outbound messages are created only by services (the agent, campaigns,
    # the SDR's reply box), never here: a forged one would be sent (issue 8,
    # finding 7). Status, outcome, provider ids, authorship, chip and priority
    # belong to the outbox; only the text of a message that has not left may
    # be corrected, and a message that left is read-only.
    fields = [
        "conversation",
        "chip",
        "direction",
        "purpose",
        "kind",
        "body",
        "media_url",
        "media_id",
        "media_mime_type",
        "status",
        "outcome",
        "provider_message_id",
        "reply_to",
        "replies_links",
        "campaign",
        "webhook_event",
        "sent_by",
        "priority",
        "attempts",
        "next_attempt_at",
        "lease_expires_at",
        "last_error",
        "provider_timestamp",
        "received_at",
        "processed_at",
        "sent_at",
        "delivered_at",
        "read_at",
        "failed_at",
        "created_at",
        "updated_at",
    ]
    readonly_fields = [name for name in fields if name != "body"]

    @admin.display(description=_("replies"))
    def replies_links(self, obj: Message) -> str:
        replies = list(obj.replies.order_by("created_at").only("pk", "body", "status"))
        together_with = None
        if not replies and obj.direction == Message.Direction.INBOUND:
            # A burst is answered once, in reply to its last message: an earlier
            # one of the burst is answered by the replies to the next message
            # that has any (the agent's own rule, agent.selectors._answers).
            later = (
                Message.objects.filter(
                    conversation_id=obj.conversation_id,
                    direction=Message.Direction.OUTBOUND,
                    reply_to__created_at__gt=obj.created_at,
                )
                .order_by("reply_to__created_at", "reply_to_id")
                .values_list("reply_to_id", flat=True)
                .first()
            )
            if later is not None:
                together_with = later
                replies = list(
                    Message.objects.filter(reply_to_id=later)
                    .order_by("created_at")
                    .only("pk", "body", "status")
                )
        if not replies:
            return "—"
        links = format_html_join(
            mark_safe("<br>"),
            '<a href="{}">#{} {}</a> ({})',
            (
                (
                    reverse("admin:conversations_message_change", args=[r.pk]),
                    r.pk,
                    short(r.body, 50),
                    r.get_status_display(),
                )
                for r in replies
            ),
        )
        if together_with is None:
            return links
        return format_html(
            '{} <a href="{}">#{}</a>:<br>{}',
            gettext("Answered together with message"),
            reverse("admin:conversations_message_change", args=[together_with]),
            together_with,
            links,
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return super().get_queryset(request).select_related("conversation__lead", "chip")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        if obj is not None and not outbox.outbox_is_editable(obj):
            return False
        return super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Message, form: Any, change: bool) -> None:
        if not outbox.outbox_edit_body(message=obj, body=obj.body):
            # It left (or started leaving) after the page's permission check.
            raise PermissionDenied
        audit_admin(request, action="message_edit_body", target=Message, objects=[obj])

    @admin.display(description=_("lead"), ordering="conversation__lead__phone")
    def lead_link(self, obj: Message) -> str:
        lead = obj.conversation.lead
        url = reverse("admin:conversations_lead_change", args=[lead.pk])
        return format_html('<a href="{}">{}</a>', url, lead)

    @admin.display(description=_("body"))
    def body_short(self, obj: Message) -> str:
        return short(obj.body, 50)

    @admin.display(description=_("last error"))
    def error_short(self, obj: Message) -> str:
        return short(obj.last_error, 40)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.retry_message")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.cancel_message")

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.reprocess_message")

    def has_chatwoot_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.retry_chatwootmirror")

    @admin.action(description=_("Send to Chatwoot again"), permissions=["chatwoot_retry"])
    def chatwoot_retry(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        selected = queryset.count()
        count = chatwoot_mirror_retry(
            mirrors=ChatwootMirror.objects.filter(message__in=queryset), actor=request.user
        )
        self.message_user(
            request,
            gettext(
                "%(count)d message(s) back in the queue for Chatwoot; %(skipped)d skipped "
                "(not refused by Chatwoot)."
            )
            % {"count": count, "skipped": selected - count},
        )

    @admin.action(description=_("Reprocess (the agent answers again)"), permissions=["reprocess"])
    def reprocess_messages(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        report = messages_reprocess(messages=list(queryset))
        audit_admin(
            request,
            action="message_reprocess",
            target=Message,
            objects=queryset,
            detail={"queued": report.queued, "answered": report.answered},
        )
        self.message_user(
            request,
            gettext(
                "%(queued)d message(s) sent to the agent to answer; %(answered)d already "
                "answered (no duplicate reply); %(skipped)d skipped for not being from the lead."
            )
            % {
                "queued": report.queued,
                "answered": report.answered,
                "skipped": report.not_inbound,
            },
        )

    @admin.action(
        description=_("Reprocess forcing a new reply (even if already answered)"),
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
            report = messages_reprocess(messages=list(inbound), force=True)
            audit_admin(
                request,
                action="message_reprocess_force",
                target=Message,
                objects=inbound,
                detail={"queued": report.queued},
            )
            self.message_user(
                request,
                ngettext(
                    "%(count)d message sent to the agent to answer again.",
                    "%(count)d messages sent to the agent to answer again.",
                    report.queued,
                )
                % {"count": report.queued},
            )
            return None
        return TemplateResponse(
            request,
            "admin/conversations/message/reprocess_force_confirmation.html",
            {
                **self.admin_site.each_context(request),
                "title": gettext("Reprocess forcing a new reply"),
                "opts": self.model._meta,
                "inbound": inbound,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            },
        )

    @admin.action(description=_("Retry now"), permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        # Counted before: the changelist's own filter (status = failed) would
        # no longer match the messages the action just put back in the queue.
        selected = queryset.count()
        count = outbox.outbox_retry_now(messages=queryset)
        skipped = selected - count
        audit_admin(
            request,
            action="message_retry",
            target=Message,
            objects=queryset,
            count=count,
            detail={"skipped": skipped},
        )
        self.message_user(
            request,
            gettext(
                "%(count)d message(s) back in the queue; %(skipped)d skipped "
                "(received, already sent, being sent or cancelled)."
            )
            % {"count": count, "skipped": skipped},
        )

    @admin.action(description=_("Cancel send"), permissions=["cancel"])
    def cancel_messages(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        selected = queryset.count()
        count = outbox.outbox_cancel(
            messages=queryset,
            reason=gettext("Cancelled by %(user)s") % {"user": request.user.get_username()},
        )
        skipped = selected - count
        audit_admin(
            request,
            action="message_cancel",
            target=Message,
            objects=queryset,
            count=count,
            detail={"skipped": skipped},
        )
        self.message_user(
            request,
            gettext(
                "%(count)d message(s) cancelled; %(skipped)d skipped "
                "(received, already sent or being sent)."
            )
            % {"count": count, "skipped": skipped},
        )


@admin.register(ChatwootMirror)
class ChatwootMirrorAdmin(admin.ModelAdmin):
    """The writes into Chatwoot, read-only: what waits, what Chatwoot refused and why.

    Label syncs have no message, so a refused one is sent again from here;
    the rows move only through conversations.chatwoot_mirror.
    """

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_display = [
        "id",
        "created_at",
        "kind",
        "conversation_link",
        "message_link",
        "state",
        "attempts",
        "error_short",
        "next_attempt_at",
    ]
    list_filter = ["state", "kind"]
    list_select_related = ["conversation__lead", "message"]
    search_fields = ["conversation__lead__phone", "remote_id"]
    actions = ["chatwoot_retry"]
    fields = [
        "conversation",
        "message",
        "kind",
        "state",
        "attempts",
        "next_attempt_at",
        "lease_expires_at",
        "uncertain",
        "remote_id",
        "labels",
        "last_error",
        "created_at",
        "done_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: ChatwootMirror | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: ChatwootMirror | None = None
    ) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.retry_chatwootmirror")

    @admin.display(description=_("conversation"), ordering="conversation_id")
    def conversation_link(self, obj: ChatwootMirror) -> str:
        url = reverse("admin:conversations_conversation_change", args=[obj.conversation_id])
        return format_html('<a href="{}">{}</a>', url, obj.conversation.lead)

    @admin.display(description=_("message"))
    def message_link(self, obj: ChatwootMirror) -> str:
        if obj.message is None:
            return "—"
        url = reverse("admin:conversations_message_change", args=[obj.message_id])
        return format_html(
            '<a href="{}">#{} {}</a>', url, obj.message_id, short(obj.message.body, 40)
        )

    @admin.display(description=_("last error"))
    def error_short(self, obj: ChatwootMirror) -> str:
        return short(obj.last_error, 60)

    @admin.action(description=_("Send to Chatwoot again"), permissions=["retry"])
    def chatwoot_retry(self, request: HttpRequest, queryset: QuerySet[ChatwootMirror]) -> None:
        selected = queryset.count()
        count = chatwoot_mirror_retry(mirrors=queryset, actor=request.user)
        self.message_user(
            request,
            gettext(
                "%(count)d write(s) back in the queue for Chatwoot; %(skipped)d skipped "
                "(not refused by Chatwoot)."
            )
            % {"count": count, "skipped": selected - count},
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
    # Handoffs move only through conversations.ownership (the owner actions and
    # the chat page), which times each step; here only the note is written.
    readonly_fields = [
        "conversation",
        "reason",
        "status",
        "requested_by",
        "assigned_to",
        "notified_at",
        "reminded_at",
        "created_at",
        "accepted_at",
        "resolved_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description=_("lead"), ordering="conversation__lead__name")
    def lead(self, obj: Handoff) -> Lead:
        return obj.conversation.lead
