"""Project-wide endpoints that are not part of any app's domain."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from core.health import Status, health_report


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Liveness and readiness for load balancers, uptime checks and the ops.

    503 only when the database is unreachable: a stale worker or a backlog is
    `degraded` (worth an alert) but the web process can still take webhooks.
    """
    report = health_report()
    code = 503 if report["status"] == Status.DOWN else 200
    return JsonResponse(report, status=code)
