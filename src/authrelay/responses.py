"""Framework-neutral responses, and the rendering of errors per the error model.

Every response authrelay produces carries ``Cache-Control: no-store`` and
``X-Content-Type-Options: nosniff``; one that sets or clears the session cookie also
carries ``Vary: Cookie`` (SE-08); HTML pages carry a ``Content-Security-Policy`` that
allows nothing but their own inline style. Bodies never echo a token, a claim or a
third-party exception text (BR-05), and text in HTML is always escaped.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from urllib.parse import quote

from .errors import (
    AuthRelayError,
    CallbackError,
    ConsentRequired,
    InsufficientScope,
    MalformedCredentials,
    MissingCredentials,
    ReauthorizationRequired,
    UpstreamError,
)

__all__ = [
    "Response",
    "error_response",
    "json_response",
    "private_headers",
    "redirect",
    "wants_html",
]

_NO_STORE = ("cache-control", "no-store")
_NOSNIFF = ("x-content-type-options", "nosniff")
_PRIVATE = ("cache-control", "private")
_NO_REFERRER = ("referrer-policy", "no-referrer")
_VARY_COOKIE = ("vary", "Cookie")
_STYLE = "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:40rem}"
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
_HTML_CSP = (
    "content-security-policy",
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'",
)
"""Nothing loads, nothing frames the page; only its own inline style applies."""


@dataclass(slots=True)
class Response:
    """Status, headers and body, rendered by either shell."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def set_cookie(self, value: str) -> None:
        """Add a ``Set-Cookie`` header and the ``Vary: Cookie`` it needs (SE-08)."""
        self.headers.append(("set-cookie", value))
        self.vary_cookie()

    def vary_cookie(self) -> None:
        """Mark the response as depending on the session cookie (SE-08)."""
        self.headers[:] = private_headers(self.headers, None)

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """Headers as ASGI byte pairs."""
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]


def _names_cookie(vary: str) -> bool:
    return any(item.strip().lower() in ("cookie", "*") for item in vary.split(","))


def private_headers(
    headers: Iterable[tuple[str, str]], set_cookie: str | None
) -> list[tuple[str, str]]:
    """``headers`` of a response that depended on the session cookie (SE-08).

    ``Cookie`` merged into the first ``Vary`` (or a ``Vary: Cookie`` added),
    ``Cache-Control: private`` unless the app set a ``Cache-Control``, and ``set_cookie``
    (if any) with ``Cache-Control: no-store``.
    """
    out: list[tuple[str, str]] = []
    vary = cache = False
    for name, value in headers:
        lower = name.lower()
        if lower == "vary" and not vary:
            vary = True
            if not _names_cookie(value):
                value = f"{value}, Cookie" if value.strip() else "Cookie"
        elif lower == "cache-control":
            cache = True
        out.append((name, value))
    if set_cookie is not None:
        out.append(("set-cookie", set_cookie))
        out.append(_NO_STORE)
    elif not cache:
        out.append(_PRIVATE)
    if not vary:
        out.append(_VARY_COOKIE)
    return out


def json_response(
    data: object, status: int = 200, headers: Sequence[tuple[str, str]] = ()
) -> Response:
    """A JSON response with ``Cache-Control: no-store``."""
    body = json.dumps(data, separators=(",", ":")).encode()
    return Response(
        status,
        [("content-type", "application/json"), _NO_STORE, _NOSNIFF, *headers],
        body,
    )


def redirect(location: str, status: int = 303, headers: Sequence[tuple[str, str]] = ()) -> Response:
    """A redirect; ``location`` must already be validated (no CR/LF: RD-05)."""
    if "\r" in location or "\n" in location:
        raise ValueError("a Location header cannot contain CR or LF")
    return Response(status, [("location", location), _NO_STORE, _NOSNIFF, *headers])


def wants_html(accept: str | None) -> bool:
    """True when ``Accept`` prefers HTML to JSON (a browser navigation)."""
    if not accept:
        return False
    html = _quality(accept, ("text/html", "application/xhtml+xml"))
    other = _quality(accept, ("application/json", "*/*"))
    return html > 0 and html >= other and "application/json" not in accept.split(",")[0]


def _quality(accept: str, types: tuple[str, ...]) -> float:
    best = 0.0
    for item in accept.split(","):
        media, _, params = item.strip().partition(";")
        if media.strip().lower() in types:
            q = 1.0
            for param in params.split(";"):
                name, _, value = param.strip().partition("=")
                if name == "q":
                    try:
                        q = float(value)
                    except ValueError:
                        q = 0.0
            best = max(best, q)
    return best


def _html(status: int, title: str, message: str, headers: list[tuple[str, str]]) -> Response:
    title, message = escape(title), escape(message)
    page = (
        f"<!doctype html><meta charset=utf-8><style>{_STYLE}</style><title>{title}</title>"
        f"<h1>{title}</h1><p>{message}</p>"
    ).encode()
    return Response(
        status,
        [("content-type", "text/html; charset=utf-8"), _NOSNIFF, _HTML_CSP, *headers],
        page,
    )


def error_response(
    error: AuthRelayError,
    *,
    accept: str | None = None,
    login_url: str | None = None,
    path: str = "/",
    realm: str = "authrelay",
) -> Response:
    """The HTTP answer for ``error`` per the error model.

    ``login_url`` enables the browser redirect for missing credentials (E-LOGIN);
    ``path`` is the current path, put in ``next``.
    """
    browser = wants_html(accept)
    headers: list[tuple[str, str]] = [_NO_STORE]
    body: dict[str, object] = {"error": error.error}
    if isinstance(error, MissingCredentials):
        if browser and login_url:
            return redirect(f"{login_url}?next={quote(path, safe='/')}", 302, [_NO_REFERRER])
        headers.append(("www-authenticate", f'Bearer realm="{realm}"'))  # RFC 6750 §3.1
    elif isinstance(error, MalformedCredentials):
        headers.append(("www-authenticate", 'Bearer error="invalid_request"'))
    elif isinstance(error, ReauthorizationRequired):
        if error.connector:
            body["connector"] = error.connector
        if error.login_url:
            body["login_url"] = error.login_url
            if browser:
                return redirect(error.login_url, 302, [_NO_REFERRER])
        if isinstance(error, ConsentRequired) and error.scopes:
            scope = " ".join(error.scopes)
            headers.append(
                ("www-authenticate", f'Bearer error="insufficient_scope", scope="{scope}"')
            )
    elif isinstance(error, InsufficientScope):
        scope = " ".join(error.scopes)
        headers.append(("www-authenticate", f'Bearer error="insufficient_scope", scope="{scope}"'))
    elif error.status == 401:
        headers.append(("www-authenticate", f'Bearer realm="{realm}", error="invalid_token"'))
    elif isinstance(error, CallbackError):
        body["error"] = error.code
        headers.append(("referrer-policy", "no-referrer"))
    elif isinstance(error, UpstreamError):
        if error.connector:
            body["connector"] = error.connector
        if error.service:
            body["service"] = error.service
        if error.status == 503:
            headers.append(("retry-after", str(error.retry_after or 5)))
    if error.status >= 500 and not isinstance(error, UpstreamError):
        body = {"error": "server_error"}
    else:
        body.setdefault("error_description", error.description)
    if browser:
        return _html(error.status, _TITLES.get(error.status, "Error"), error.description, headers)
    return json_response(body, error.status, headers[1:])


_TITLES: Mapping[int, str] = {
    400: "Bad request",
    401: "Sign-in required",
    403: "Not allowed",
    431: "Request headers too large",
    502: "Upstream error",
    503: "Temporarily unavailable",
    504: "Upstream timeout",
}
