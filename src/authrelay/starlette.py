"""Starlette integration: a per-route ``requires`` decorator and request helpers.

``AuthRelayMiddleware`` decides *who* is calling; this module decides, per route, who
may call. ``@requires("orders.read")`` raises :class:`~authrelay.MissingCredentials`
for an anonymous caller and :class:`~authrelay.InsufficientScope` for a caller without
the scope; the middleware renders both per the error model (401 with an RFC 6750
challenge for API callers, 302 to the login route for browsers, 403
``insufficient_scope`` naming the scope). Install the middleware with
``app.add_middleware`` or ``Starlette(middleware=[...])``, or wrap the whole app: the
decorator renders its own answers, so both work.

Defends against: routes that forget to check the caller (fail closed: a route behind
``requires`` never runs for an anonymous caller), and websocket routes that accept a
connection before checking it (they are closed with 1008 before ``accept``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from starlette.requests import HTTPConnection
from starlette.responses import Response as StarletteResponse
from starlette.websockets import WebSocket

from .declare import injected, record, service_names
from .errors import AuthRelayError, InsufficientScope, MissingCredentials
from .principal import NO_CREDENTIALS, Credentials, Principal
from .responses import Response, error_response
from .services import AsyncServiceClient, Services

__all__ = [
    "get_credentials",
    "get_principal",
    "get_services",
    "requires",
    "to_starlette",
    "uses",
]

F = TypeVar("F", bound=Callable[..., Any])

_NOT_INSTALLED = (
    "authrelay: no principal on this request; add AuthRelayMiddleware to the app "
    "(app.add_middleware(AuthRelayMiddleware, settings=settings))"
)


def get_principal(connection: HTTPConnection) -> Principal:
    """The caller of this request or websocket (anonymous when nobody signed in)."""
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal):
        raise RuntimeError(_NOT_INSTALLED)
    return principal


def get_credentials(connection: HTTPConnection) -> Credentials:
    """What proved the caller: its scopes (and, never printed, its bearer token)."""
    credentials = connection.scope.get("auth")
    return credentials if isinstance(credentials, Credentials) else NO_CREDENTIALS


def get_services(connection: HTTPConnection) -> Services[AsyncServiceClient]:
    """The lazy ``Services`` of this request: ``get_services(request)["orders"]``."""
    state = connection.scope.get("state") or {}
    services = state.get("services")
    if not isinstance(services, Services):
        raise RuntimeError(_NOT_INSTALLED)
    return cast("Services[AsyncServiceClient]", services)


def check(principal: Principal, credentials: Credentials, scopes: Iterable[str]) -> None:
    """Raise unless ``principal`` is signed in and its credentials carry every scope."""
    if not principal.is_authenticated:
        raise MissingCredentials()
    missing = tuple(scope for scope in scopes if scope not in credentials.scopes)
    if missing:
        raise InsufficientScope(scopes=missing)


def to_starlette(response: Response) -> StarletteResponse:
    """An authrelay :class:`~authrelay.responses.Response` as a Starlette response."""
    rendered = StarletteResponse(response.body, status_code=response.status)
    rendered.raw_headers.extend(response.raw_headers())
    return rendered


def requires(*scopes: str, redirect_to_login: bool = True) -> Callable[[F], F]:
    """Protect a Starlette endpoint (function or method, sync or async, HTTP or websocket).

    Anonymous callers get the :class:`~authrelay.MissingCredentials` answer, callers
    lacking one of ``scopes`` the :class:`~authrelay.InsufficientScope` one.
    With ``redirect_to_login=False`` an anonymous browser gets the 401 too, never a
    redirect (for API routes a browser may open directly). Websockets without the
    right credentials are closed with code 1008 (policy violation) before ``accept``.
    """
    required = tuple(scopes)
    for scope in required:
        if not isinstance(scope, str) or not scope or " " in scope:
            raise TypeError(f"requires() takes scope names, got {scope!r}")

    def decorator(endpoint: F) -> F:
        def guard(args: tuple[Any, ...], kwargs: dict[str, Any]) -> StarletteResponse | None:
            connection = _connection(args, kwargs, endpoint)
            try:
                check(get_principal(connection), get_credentials(connection), required)
            except AuthRelayError as exc:
                if isinstance(connection, WebSocket):
                    raise
                # Rendered here, not left to the middleware, so that it also works when the
                # middleware wraps the whole app outside Starlette's error handling.
                relay = connection.scope.get("authrelay")
                login_url = relay.login_url() if redirect_to_login and relay is not None else None
                accept = connection.headers.get("accept")
                return to_starlette(
                    error_response(
                        exc, accept=accept, login_url=login_url, path=connection.url.path
                    )
                )
            return None

        if inspect.iscoroutinefunction(endpoint):

            @functools.wraps(endpoint)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    refused = guard(args, kwargs)
                except AuthRelayError as exc:
                    connection = _connection(args, kwargs, endpoint)
                    if isinstance(connection, WebSocket):
                        await connection.close(code=1008, reason=exc.error)
                        return None
                    raise
                if refused is not None:
                    return refused
                return await endpoint(*args, **kwargs)

            record(async_wrapper, scopes=required)
            return cast(F, async_wrapper)

        @functools.wraps(endpoint)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            refused = guard(args, kwargs)
            if refused is not None:
                return refused
            return endpoint(*args, **kwargs)

        record(sync_wrapper, scopes=required)
        return cast(F, sync_wrapper)

    return decorator


def uses(*names: str) -> Callable[[F], F]:
    """Declare the services a Starlette endpoint calls: ``@uses("github", "inventory")``.

    The names are checked against the settings when the app starts (a typo stops it,
    naming the nearest configured service), and ``authrelay check --app`` lists them.
    An endpoint parameter named like a service (lower case, ``-`` as ``_``) receives
    its :class:`~authrelay.services.AsyncServiceClient`::

        @uses("github")
        async def repos(request: Request, github: AsyncServiceClient) -> Response: ...
    """
    declared = service_names(names, "uses()")

    def decorator(endpoint: F) -> F:
        pairs = injected(endpoint, declared)
        if not pairs:
            record(endpoint, services=declared)
            return endpoint

        def clients(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            services = get_services(_connection(args, kwargs, endpoint))
            return {**kwargs, **{parameter: services[name] for parameter, name in pairs}}

        if inspect.iscoroutinefunction(endpoint):

            @functools.wraps(endpoint)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await endpoint(*args, **clients(args, kwargs))

            record(async_wrapper, services=declared)
            return cast(F, async_wrapper)

        @functools.wraps(endpoint)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            return endpoint(*args, **clients(args, kwargs))

        record(sync_wrapper, services=declared)
        return cast(F, sync_wrapper)

    return decorator


def _connection(args: tuple[Any, ...], kwargs: dict[str, Any], endpoint: Any) -> HTTPConnection:
    for value in (*args, *kwargs.values()):
        if isinstance(value, HTTPConnection):
            return value
    name = getattr(endpoint, "__qualname__", repr(endpoint))
    raise TypeError(f"@requires: {name} was called without a Request or WebSocket argument")
