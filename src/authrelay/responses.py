"""Framework-neutral responses, and the rendering of errors per the error model.

Every response authrelay produces carries ``Cache-Control: no-store``; one that sets or
clears the session cookie also carries ``Vary: Cookie`` (SE-08). Bodies never echo a
token, a claim or a third-party exception text (BR-05).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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

__all__ = ["Response", "error_response", "json_response", "redirect", "wants_html"]

_NO_STORE = ("cache-control", "no-store")


@dataclass(slots=True)
class Response:
    """Status, headers and body, rendered by either shell."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def set_cookie(self, value: str) -> None:
        """Add a ``Set-Cookie`` header and the ``Vary: Cookie`` it needs (SE-08)."""
        self.headers.append(("set-cookie", value))
        if ("vary", "Cookie") not in self.headers:
            self.headers.append(("vary", "Cookie"))

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """Headers as ASGI byte pairs."""
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]


def json_response(
    data: object, status: int = 200, headers: Sequence[tuple[str, str]] = ()
) -> Response:
    """A JSON response with ``Cache-Control: no-store``."""
    body = json.dumps(data, separators=(",", ":")).encode()
    return Response(
        status,
        [("content-type", "application/json"), _NO_STORE, *headers],
        body,
    )


def redirect(location: str, status: int = 303, headers: Sequence[tuple[str, str]] = ()) -> Response:
    """A redirect; ``location`` must already be validated (no CR/LF: RD-05)."""
    if "\r" in location or "\n" in location:
        raise ValueError("a Location header cannot contain CR or LF")
    return Response(status, [("location", location), _NO_STORE, *headers])


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
    page = (
        "<!doctype html><meta charset=utf-8><title>{t}</title><h1>{t}</h1><p>{m}</p>".format(
            t=escape(title), m=escape(message)
        )
    ).encode()
    return Response(status, [("content-type", "text/html; charset=utf-8"), *headers], page)


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
            return redirect(f"{login_url}?next={quote(path, safe='/')}", 302)
        headers.append(("www-authenticate", f'Bearer realm="{realm}"'))  # RFC 6750 §3.1
    elif isinstance(error, MalformedCredentials):
        headers.append(("www-authenticate", 'Bearer error="invalid_request"'))
    elif isinstance(error, ReauthorizationRequired):
        if error.connector:
            body["connector"] = error.connector
        if error.login_url:
            body["login_url"] = error.login_url
            if browser:
                return redirect(error.login_url, 302)
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
