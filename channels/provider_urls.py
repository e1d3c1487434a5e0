"""Which provider API addresses the worker may call (server-side request forgery guard).

A chip's API base URL is typed in the admin, and the worker POSTs to it with
the chip's credentials: without a check anyone who may edit a chip could make
the worker call internal services (metadata endpoints, the database host,
admin panels) and read part of the answer back. Provider URLs must be http(s)
and resolve only to public addresses. `PROVIDER_ALLOW_PRIVATE_URLS` lifts the
address check for self-hosted providers on a private network and for the
local fake servers of tests and `make run`.

The check runs when a chip is saved (a clear, translated error on the form) and
again at connection time, on the very address the socket connects to
(`channels.http`), so a host name that resolves elsewhere later (DNS
rebinding) is refused too.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.translation import gettext as _

ALLOWED_SCHEMES = ("http", "https")


class UnsafeProviderURL(ValueError):
    """The URL or the address it resolves to may not be called; the message is translated."""


def address_is_public(address: str) -> bool:
    """True for a globally routable unicast address (no private, loopback, link-local...)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def public_addresses(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to; UnsafeProviderURL if any is not public.

    Every address must be public: a name that resolves to a public and a
    private address would let the connection pick the private one.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeProviderURL(
            _("Could not resolve the address %(host)s.") % {"host": host}
        ) from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        if not address_is_public(address):
            raise UnsafeProviderURL(
                _(
                    "The address %(host)s points to an internal network (%(address)s); use "
                    "the provider's public address."
                )
                % {"host": host, "address": address}
            )
    return addresses


def provider_url_check(url: str, *, resolve: bool = True) -> None:
    """Raise UnsafeProviderURL unless `url` may be used as a provider API base URL.

    `resolve=False` checks the URL's form only (the connection checks the address).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeProviderURL(_("Invalid URL.")) from exc
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise UnsafeProviderURL(_("The provider's URL must start with https:// or http://."))
    if not parts.hostname:
        raise UnsafeProviderURL(_("The provider's URL has no host."))
    if not resolve or settings.PROVIDER_ALLOW_PRIVATE_URLS:
        return
    default_port = 443 if parts.scheme.lower() == "https" else 80
    public_addresses(parts.hostname, port or default_port)
