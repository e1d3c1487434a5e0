"""The address a request came from, behind as many reverse proxies as we trust."""

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or the one our first trusted proxy saw.

    Each proxy appends the address it received the request from to
    X-Forwarded-For; entries to the left of those our TRUSTED_PROXY_COUNT
    proxies wrote come from the client and may be forged, so they are never
    read. With no trusted proxy (the default) the header is ignored.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) < count:
        # Fewer hops than configured proxies: the request skipped one; trust nothing forwarded.
        return remote
    return forwarded[-count]
