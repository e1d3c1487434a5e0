"""Project-wide endpoints that are not part of any app's domain."""

import hmac
import ipaddress
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_prometheus import exports

from core.alerts import alerts_evaluate_on_request
from core.client_ip import client_ip
from core.health import Status, health_report
from core.http_metrics import view_request_metrics_flush


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Liveness and readiness for load balancers, uptime checks and the ops.

    503 only when the database is unreachable: a stale worker or a backlog is
    `degraded` (worth an alert) but the web process can still take webhooks.
    Only logged-in staff see the details (errors with hosts and ports, ages,
    counts); anyone else gets each check's status.
    """
    report = health_report()
    code = 503 if report["status"] == Status.DOWN else 200
    if code == 200:
        # Uptime checks keep polling /health when the worker is dead: open its alert here.
        alerts_evaluate_on_request()
    if not _is_staff(request):
        report = _without_details(report)
    return JsonResponse(report, status=code)


def _is_staff(request: HttpRequest) -> bool:
    try:
        return request.user.is_authenticated and request.user.is_staff
    except DatabaseError:
        # Sessions live in the database: when it is down nobody can be
        # identified, and the details are in the log line core.health writes.
        return False


def _without_details(report: dict[str, Any]) -> dict[str, Any]:
    checks = {name: {"status": check["status"]} for name, check in report["checks"].items()}
    return {"status": report["status"], "checks": checks}


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text, for the scrapers METRICS_TOKEN and METRICS_ALLOWED_IPS name."""
    if settings.METRICS_ALLOWED_IPS and not _address_allowed(client_ip(request)):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    if settings.METRICS_TOKEN and not _bearer_matches(request, settings.METRICS_TOKEN):
        response = HttpResponse("unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    view_request_metrics_flush()
    return exports.ExportToDjangoView(request)


def _address_allowed(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(
        ip in ipaddress.ip_network(entry, strict=False) for entry in settings.METRICS_ALLOWED_IPS
    )


def _bearer_matches(request: HttpRequest, token: str) -> bool:
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    # Constant time, on bytes: a non-ASCII header must not raise.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credential.strip().encode(), token.encode()
    )
