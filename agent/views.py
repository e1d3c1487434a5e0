"""Admin views of the agent: the sandbox chat page and its small JSON endpoints."""

from __future__ import annotations

import json

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from agent import sandbox
from agent.models import AgentProfile

PERMISSION = "agent.sandbox_agentprofile"


def _check(request: HttpRequest) -> None:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied


def _payload(request: HttpRequest) -> dict:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


@require_GET
def sandbox_chat(request: HttpRequest) -> HttpResponse:
    _check(request)
    context = {
        **admin.site.each_context(request),
        "title": "Chat sandbox",
        "chips": sandbox.sandbox_chips(),
        "profiles": AgentProfile.objects.filter(is_active=True),
    }
    return render(request, "admin/sandbox_chat.html", context)


@require_POST
def sandbox_send(request: HttpRequest) -> JsonResponse:
    _check(request)
    data = _payload(request)
    try:
        sent = sandbox.sandbox_lead_writes(
            chip_id=data.get("chip") or 0,
            phone=str(data.get("phone") or ""),
            text=str(data.get("text") or ""),
            name=str(data.get("name") or ""),
            profile_id=data.get("profile") or None,
        )
    except sandbox.SandboxError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"event_id": sent.event_id, "conversation_id": sent.conversation_id})


@require_POST
def sandbox_reset(request: HttpRequest) -> JsonResponse:
    _check(request)
    data = _payload(request)
    try:
        closed = sandbox.sandbox_conversation_reset(
            chip_id=data.get("chip") or 0, phone=str(data.get("phone") or "")
        )
    except sandbox.SandboxError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"closed": closed})


@require_GET
def sandbox_messages(request: HttpRequest) -> JsonResponse:
    _check(request)
    try:
        transcript = sandbox.sandbox_transcript(
            chip_id=request.GET.get("chip") or 0, phone=request.GET.get("phone", "")
        )
    except sandbox.SandboxError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse(transcript)
