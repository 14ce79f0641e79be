"""Checks of the URLs in settings: the app's own base URL and identity-provider issuers.

Defends against: a base URL without a scheme turning into a relative redirect URI
(``redirect_uri=app.example%2Fauth%2F…``), a query or fragment glued onto every redirect
URI, an issuer that discovery and the ``iss`` comparison can never match (JW-05), and
plain http outside loopback development (TR-01).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["is_loopback_host", "url_problem"]


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_problem(url: str, *, allow_insecure_loopback: bool, example: str) -> str | None:
    """Why ``url`` cannot be a base URL or issuer, or None when it can.

    It must be absolute with a host, without user info, query or fragment, and https;
    plain http only on a loopback host with ``http.allow_insecure_loopback``.
    """
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (a bad port raises here)
    except ValueError:
        return f"is not a valid URL ({url!r}); write it like {example!r}"
    if parts.scheme not in ("http", "https") or not host:
        return f"must be an absolute URL with https:// and a host, like {example!r} (got {url!r})"
    if parts.username is not None or parts.password is not None:
        return "must not carry user info (user:password@)"
    if parts.query or url.endswith("?"):
        return f"must not carry a query ('?{parts.query}'); give the base URL only"
    if parts.fragment or "#" in url:
        return f"must not carry a fragment ('#{parts.fragment}')"
    if parts.scheme == "https":
        return None
    if not is_loopback_host(host):
        return f"must use https, not plain http ({url!r}) (TR-01)"
    if not allow_insecure_loopback:
        return (
            "plain http is allowed only for loopback development with "
            "http.allow_insecure_loopback = true (TR-01)"
        )
    return None
