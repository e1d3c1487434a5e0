"""The SDR's screen in the admin: the handoff queue and a conversation as a chat.

Thin doors: reads come from `conversations.sdr`, every change goes through
`conversations.ownership` or `conversation_reply_as_human`, and is audited.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _

from conversations.admin import OWNER_ACTIONS, conversations_set_owner_from_admin
from conversations.models import Conversation, Handoff
from conversations.ownership import ACTIVE_HANDOFF, OwnershipError
from conversations.sdr import conversation_reply_as_human, conversation_transcript, handoff_queue
from core.audit import audit_record
from core.models import AuditEntry

MAX_REPLY_CHARS = 4096
VIEW_PERMISSION = "conversations.view_conversation"
ACT_PERMISSION = "conversations.take_over_conversation"


def _context(request: HttpRequest, title: str) -> dict:
    return {
        **admin.site.each_context(request),
        "title": title,
        "opts": Conversation._meta,
        "can_act": request.user.has_perm(ACT_PERMISSION),
    }


def queue_view(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    return TemplateResponse(
        request,
        "admin/conversations/conversation/queue.html",
        {
            **_context(request, _("Human service queue")),
            "handoffs": handoff_queue(user=request.user)[:200],
        },
    )


def chat_view(request: HttpRequest, conversation_id: int) -> HttpResponse:
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    conversation = get_object_or_404(
        Conversation.objects.select_related("lead", "chip", "owner_changed_by"),
        pk=conversation_id,
    )
    if request.method == "POST":
        if not request.user.has_perm(ACT_PERMISSION):
            raise PermissionDenied
        _chat_post(request, conversation)
        url = reverse("admin:conversations_conversation_chat", args=[conversation.pk])
        return HttpResponseRedirect(url)
    handoff = (
        Handoff.objects.filter(conversation=conversation, status__in=ACTIVE_HANDOFF)
        .select_related("assigned_to")
        .first()
    )
    return TemplateResponse(
        request,
        "admin/conversations/conversation/chat.html",
        {
            **_context(request, _("Conversation with %(lead)s") % {"lead": conversation.lead}),
            "conversation": conversation,
            "handoff": handoff,
            "lines": conversation_transcript(conversation=conversation),
            "owner_actions": [(name, label) for name, owner, label, _r in OWNER_ACTIONS],
            "max_reply_chars": MAX_REPLY_CHARS,
        },
    )


def _chat_post(request: HttpRequest, conversation: Conversation) -> None:
    action = request.POST.get("action", "")
    if action == "reply":
        body = request.POST.get("body", "").strip()
        if not body or len(body) > MAX_REPLY_CHARS:
            messages.error(
                request,
                _("Write a message of 1 to %(max)d characters.") % {"max": MAX_REPLY_CHARS},
            )
            return
        try:
            message = conversation_reply_as_human(
                conversation=conversation, user=request.user, body=body
            )
        except OwnershipError as exc:
            messages.error(request, str(exc))
            return
        audit_record(
            action="conversation_reply",
            source=AuditEntry.Source.ADMIN,
            actor=request.user,
            target=Conversation,
            objects=[conversation],
            detail={"message_id": message.pk},
        )
        messages.success(request, _("Message in the send queue."))
        return
    if action not in {name for name, *_rest in OWNER_ACTIONS}:
        messages.error(request, _("Unknown action."))
        return
    changed, refused = conversations_set_owner_from_admin(
        request=request, conversations=[conversation], action=action
    )
    if refused:
        messages.error(request, _("Conversation closed: nothing changed."))
    elif changed:
        messages.success(request, _("Done: %(owner)s.") % {"owner": _owner_label(conversation)})


def _owner_label(conversation: Conversation) -> str:
    conversation.refresh_from_db(fields=["controlled_by"])
    return str(conversation.get_controlled_by_display())
