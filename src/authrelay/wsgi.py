"""The WSGI shell: the same core as the ASGI middleware, driven synchronously.

Sets ``environ["authrelay.principal"]``, ``environ["authrelay.credentials"]`` and
``environ["authrelay.services"]`` (sync clients), serves the connector routes under
``routes.prefix`` and renders authrelay errors the app lets propagate before it starts
responding. Native sync I/O (``httpx.Client``): never an event loop or a thread hop.

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
from .identity.resolve import ANONYMOUS_RESOLUTION, Pending, Resolution
from .principal import ANONYMOUS, NO_CREDENTIALS
from .relay import Relay
from .responses import Response, error_response, json_response, private_headers
from .routing import AuthRequest
from .settings import Settings

__all__ = ["AuthRelayWSGIMiddleware", "render"]

_MAX_BODY = 64 * 1024


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
        self._identity = relay.identity
        self._services = relay.services
        self._prefix = relay.prefix
        self._prefix_slash = relay.prefix + "/"
        # The anonymous caller's keys, built once: its Services binds no one, so every
        # anonymous request can share it (the clients it makes hold no request state).
        self._anonymous_keys = {
            "authrelay.principal": ANONYMOUS,
            "authrelay.credentials": NO_CREDENTIALS,
            "authrelay.services": relay.services.for_request(
                ANONYMOUS, NO_CREDENTIALS, asynchronous=False
            ),
            "authrelay.relay": relay,
        }
        self._start_pending = True

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self._start_pending:  # after a pre-fork import, in the worker that serves
            self._start_pending = False
            self.relay.start_background()
        # The common case first: no credentials and not a connector route. This path is
        # what ``_handle`` would do for it, minus the calls (anonymous, nothing to set).
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
        authorization = environ.get("HTTP_AUTHORIZATION")
        cookie = environ.get("HTTP_COOKIE")
        if authorization is None and cookie is None:
            resolution = ANONYMOUS_RESOLUTION  # what ``fast`` answers, without the call
        else:
            # WSGI folds repeated headers into one with ", ": two tokens show as a comma.
            authz = [] if authorization is None else _split_authorization(authorization)
            query = environ.get("QUERY_STRING", "").encode("latin-1")
            found = self._identity.lookup(authz, cookie, query)
            if isinstance(found, Pending):
                found = self.relay.sync_driver.run(self._identity.complete(found))
            resolution = found
        path = environ.get("PATH_INFO", "/")
        if path == self._prefix or path.startswith(self._prefix_slash):
            return render(self._route(environ, path, resolution), start_response)
        if resolution.error is not None:
            return render(self._error(environ, resolution.error), start_response)
        principal = resolution.principal
        if principal is ANONYMOUS:
            environ.update(self._anonymous_keys)
        else:
            environ["authrelay.principal"] = principal
            environ["authrelay.credentials"] = resolution.credentials
            environ["authrelay.services"] = self._services.for_request(
                principal, resolution.credentials, asynchronous=False
            )
            environ["authrelay.relay"] = self.relay
        if resolution.private:
            start_response = _private(start_response, resolution.set_cookie)
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
        return error_response(
            error,
            accept=environ.get("HTTP_ACCEPT"),
            login_url=self.relay.login_url(),
            path=_text_path(environ.get("PATH_INFO", "/")),
        )

    def _route(self, environ: Environ, path: str, resolution: Resolution) -> Response:
        headers: dict[str, str] = {}
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                headers[key[5:].replace("_", "-").lower()] = value
        if "CONTENT_TYPE" in environ:
            headers["content-type"] = environ["CONTENT_TYPE"]
        method = environ.get("REQUEST_METHOD", "GET")
        body = b""
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > _MAX_BODY:
                return json_response({"error": "request_too_large"}, 413)
            body = environ["wsgi.input"].read(length) if length > 0 else b""
        request = AuthRequest(
            method=method,
            path=path[len(self._prefix) :] or "/",
            query_string=environ.get("QUERY_STRING", "").encode("latin-1"),
            headers=headers,
            identity=resolution,
            body=body,
            scheme=environ.get("wsgi.url_scheme", "http"),
            client_host=environ.get("REMOTE_ADDR"),
        )
        try:
            response = self.relay.sync_driver.run(self.relay.handle_route(request))
        except AuthRelayError as exc:
            response = error_response(exc, accept=headers.get("accept"), path=path)
        if resolution.private:
            response.vary_cookie()
        return response


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
