"""The WSGI shell: the same core as the ASGI middleware, driven synchronously.

Sets ``environ["authrelay.principal"]``, ``environ["authrelay.credentials"]`` and
``environ["authrelay.services"]`` (sync clients) as :mod:`authrelay.pipeline` decides,
serves the router under ``routes.prefix`` and renders authrelay errors the app lets
propagate before it starts responding. Native sync I/O (``httpx.Client``): never an
event loop or a thread hop.

Use: ``app = AuthRelayWSGIMiddleware(app, settings=settings)``; for Flask use
``authrelay.flask.init_app``, which also renders the errors Flask turns into 500s itself.
"""

from __future__ import annotations

import atexit
import sys
from collections.abc import Iterable
from typing import Any

from ._types import Environ, StartResponse, WSGIApp
from .errors import AuthRelayError
from .pipeline import BODY_METHODS, MAX_BODY, Pass, Pipeline, Reject, RequestView, Resolve, Route
from .relay import Relay
from .responses import Response, private_headers
from .settings import Settings

__all__ = ["AuthRelayWSGIMiddleware", "render"]


def render(response: Response, start_response: StartResponse) -> list[bytes]:
    """Send an authrelay :class:`Response` through WSGI ``start_response``."""
    start_response(_status_line(response.status), response.headers)
    return [response.body]


def _status_line(status: int) -> str:
    return f"{status} {_REASONS.get(status, 'Status')}"


def _private(start_response: StartResponse, set_cookie: str | None) -> StartResponse:
    """``start_response`` for an answer that depended on the session cookie (SE-08)."""

    def start_private(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return start_response(status, private_headers(headers, set_cookie), exc_info)

    return start_private


class AuthRelayWSGIMiddleware:
    """Wraps any WSGI app with authrelay identity, services and connector routes."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        settings: Settings | None = None,
        relay: Relay | None = None,
    ) -> None:
        if relay is None:
            if settings is None:
                raise TypeError("AuthRelayWSGIMiddleware needs settings= or relay=")
            relay = Relay(settings)
            atexit.register(relay.close)
        self.app = app
        self.relay = relay
        self.pipeline = Pipeline(relay, asynchronous=False)
        self._prefix = relay.prefix
        # The anonymous caller's keys, built once (the pipeline's precomputed answer).
        anonymous = self.pipeline.anonymous
        self._anonymous_keys = {
            "authrelay.principal": anonymous.principal,
            "authrelay.credentials": anonymous.credentials,
            "authrelay.services": anonymous.services,
            "authrelay.relay": relay,
        }

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self.pipeline.start_pending:  # after a pre-fork import, in the worker that serves
            self.pipeline.start()
        # The common case first: no credentials and not a route, the pipeline's answer
        # precomputed (anonymous, nothing to set).
        if (
            "HTTP_AUTHORIZATION" not in environ
            and "HTTP_COOKIE" not in environ
            and not environ.get("PATH_INFO", "/").startswith(self._prefix)
        ):
            environ.update(self._anonymous_keys)
            try:
                return self.app(environ, start_response)
            except AuthRelayError as exc:
                return self._app_error(environ, start_response, exc)
        return self._handle(environ, start_response)

    def _handle(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        decision = self.pipeline.begin(view_of(environ))
        if type(decision) is Resolve:
            decision = self.relay.sync_driver.run(decision.flow)
        if type(decision) is Route:
            return render(self._route(environ, decision), start_response)
        if type(decision) is Reject:
            return render(self._error(environ, decision.error), start_response)
        assert type(decision) is Pass
        if decision is self.pipeline.anonymous:
            environ.update(self._anonymous_keys)
        else:
            environ["authrelay.principal"] = decision.principal
            environ["authrelay.credentials"] = decision.credentials
            environ["authrelay.services"] = decision.services
            environ["authrelay.relay"] = self.relay
        if decision.private:
            start_response = _private(start_response, decision.set_cookie)
        try:
            return self.app(environ, start_response)
        except AuthRelayError as exc:
            return self._app_error(environ, start_response, exc)

    def _app_error(
        self, environ: Environ, start_response: StartResponse, exc: AuthRelayError
    ) -> list[bytes]:
        # PEP 3333: with exc_info, a server that already sent headers re-raises.
        response = self._error(environ, exc)
        start_response(_status_line(response.status), response.headers, sys.exc_info())
        return [response.body]

    def _error(self, environ: Environ, error: AuthRelayError) -> Response:
        path = _text_path(environ.get("PATH_INFO", "/"))
        return self.pipeline.error(error, environ.get("HTTP_ACCEPT"), path)

    def _route(self, environ: Environ, route: Route) -> Response:
        body = read_body(environ, route.view.method)
        if body is None:
            return self.pipeline.too_large()
        flow = route.flow(
            route_headers(environ),
            body,
            scheme=environ.get("wsgi.url_scheme", "http"),
            client_host=environ.get("REMOTE_ADDR"),
        )
        return self.relay.sync_driver.run(flow)


def view_of(environ: Environ) -> RequestView:
    """The :class:`RequestView` of a WSGI (or Django WSGI) request."""
    authorization = environ.get("HTTP_AUTHORIZATION")
    return RequestView(
        environ.get("REQUEST_METHOD", "GET"),
        environ.get("PATH_INFO", "/"),
        environ.get("QUERY_STRING", "").encode("latin-1"),
        # WSGI folds repeated headers into one with ", ": two tokens show as a comma.
        [] if authorization is None else _split_authorization(authorization),
        environ.get("HTTP_COOKIE"),
    )


def route_headers(environ: Environ) -> dict[str, str]:
    """Lower-case header names to values, from the ``HTTP_*`` keys and ``CONTENT_TYPE``."""
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    return headers


def read_body(environ: Environ, method: str) -> bytes | None:
    """The request body a route reads; None when it is larger than the cap (413)."""
    if method not in BODY_METHODS:
        return b""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        return None
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _text_path(path: str) -> str:
    """PEP 3333 ``PATH_INFO`` (bytes as latin-1) as the text the ASGI shell sees."""
    try:
        return path.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a server that already decoded it
        return path


def _split_authorization(value: str) -> list[str]:
    parts = [part.strip() for part in value.split(",")]
    credentials = [part for part in parts if " " in part or part.lower() == "bearer"]
    return credentials if len(credentials) > 1 else [value]


_REASONS = {
    200: "OK",
    302: "Found",
    303: "See Other",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
