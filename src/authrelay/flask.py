"""Flask integration: ``init_app``, request helpers and a per-route ``@require``.

``init_app(app, settings=settings)`` wraps ``app.wsgi_app`` with
:class:`~authrelay.wsgi.AuthRelayWSGIMiddleware`; views then read ``principal()`` and
``services()`` (sync clients). ``@require("orders.read")`` answers anonymous callers
with 401 and an RFC 6750 challenge (API) or a 302 to the login route (browser), and
callers lacking a scope with 403 ``insufficient_scope``. Flask turns unhandled
exceptions into 500s before the WSGI middleware sees them, so the decorator renders its
answer itself, and ``init_app`` registers an error handler that gives any authrelay error
a view lets propagate (a token endpoint outage, a service needing consent...) its
error-model answer.

Defends against: routes that forget to check the caller (fail closed), and a view that
silently sees an anonymous principal because the middleware is missing (a clear error).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

import flask

from .declare import check_app, injected, record, service_names
from .errors import AuthRelayError, ConfigurationError
from .principal import NO_CREDENTIALS, Credentials, Principal
from .relay import Relay
from .responses import Response, error_response
from .services import Services, SyncServiceClient
from .settings import Settings
from .starlette import check
from .wsgi import AuthRelayWSGIMiddleware

__all__ = ["credentials", "init_app", "principal", "require", "services", "to_flask", "uses"]

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("authrelay.flask")

_NOT_INSTALLED = (
    "authrelay: no principal on this request; call authrelay.flask.init_app(app, "
    "settings=settings) or wrap app.wsgi_app with AuthRelayWSGIMiddleware"
)


def init_app(
    app: flask.Flask, *, settings: Settings | None = None, relay: Relay | None = None
) -> Relay:
    """Wrap ``app.wsgi_app`` with authrelay; return the relay (also in ``app.extensions``).

    Also registers an error handler for :class:`~authrelay.AuthRelayError`: a handler
    the app registers for a subclass (or later for the same class) takes precedence.
    The services views declare with :func:`uses` are checked against the settings now
    (views registered so far) and before the first request (all of them): an unknown
    name raises :class:`~authrelay.ConfigurationError`.
    """
    middleware = AuthRelayWSGIMiddleware(app.wsgi_app, settings=settings, relay=relay)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    app.extensions["authrelay"] = middleware.relay
    app.register_error_handler(AuthRelayError, _handle_error)
    configured = middleware.relay.services.names
    check_app(app, configured)
    unchecked = [True]

    def check_declared_services() -> None:
        if unchecked:
            try:
                check_app(app, configured)
            except ConfigurationError as exc:  # every request fails until the views are fixed
                logger.error("%s", exc)
                raise
            unchecked.clear()

    app.before_request(check_declared_services)
    return middleware.relay


def _handle_error(error: AuthRelayError) -> flask.Response:
    return render_error(error)


def principal() -> Principal:
    """The caller of the current request (anonymous when nobody signed in)."""
    value = flask.request.environ.get("authrelay.principal")
    if not isinstance(value, Principal):
        raise RuntimeError(_NOT_INSTALLED)
    return value


def credentials() -> Credentials:
    """What proved the current caller: its scopes (its token is never printed)."""
    value = flask.request.environ.get("authrelay.credentials")
    return value if isinstance(value, Credentials) else NO_CREDENTIALS


def services() -> Services[SyncServiceClient]:
    """The lazy ``Services`` of the current request: ``services()["orders"].get(...)``."""
    value = flask.request.environ.get("authrelay.services")
    if not isinstance(value, Services):
        raise RuntimeError(_NOT_INSTALLED)
    return cast("Services[SyncServiceClient]", value)


def to_flask(response: Response) -> flask.Response:
    """An authrelay :class:`~authrelay.responses.Response` as a Flask response."""
    rendered = flask.Response(response.body, status=response.status)
    rendered.headers.clear()
    for name, value in response.headers:
        rendered.headers.add(name, value)
    return rendered


def render_error(error: AuthRelayError, *, redirect_to_login: bool = True) -> flask.Response:
    """The error-model answer to ``error`` for the current request."""
    environ = flask.request.environ
    relay = environ.get("authrelay.relay")
    login_url = relay.login_url() if redirect_to_login and isinstance(relay, Relay) else None
    return to_flask(
        error_response(
            error,
            accept=environ.get("HTTP_ACCEPT"),
            login_url=login_url,
            path=environ.get("PATH_INFO", "/"),
        )
    )


def require(*scopes: str, redirect_to_login: bool = True) -> Callable[[F], F]:
    """Protect a Flask view: signed-in callers holding every one of ``scopes`` only.

    ``redirect_to_login=False`` answers anonymous browsers with the 401 too.
    """
    required = tuple(scopes)
    for scope in required:
        if not isinstance(scope, str) or not scope or " " in scope:
            raise TypeError(f"require() takes scope names, got {scope!r}")

    def decorator(view: F) -> F:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_view(*args: Any, **kwargs: Any) -> Any:
                try:
                    check(principal(), credentials(), required)
                except AuthRelayError as exc:
                    return render_error(exc, redirect_to_login=redirect_to_login)
                return await view(*args, **kwargs)

            record(async_view, scopes=required)
            return cast(F, async_view)

        @functools.wraps(view)
        def sync_view(*args: Any, **kwargs: Any) -> Any:
            try:
                check(principal(), credentials(), required)
            except AuthRelayError as exc:
                return render_error(exc, redirect_to_login=redirect_to_login)
            return view(*args, **kwargs)

        record(sync_view, scopes=required)
        return cast(F, sync_view)

    return decorator


def uses(*names: str) -> Callable[[F], F]:
    """Declare the services a Flask view calls: ``@uses("github", "inventory")``.

    :func:`init_app` checks the names against the settings (a typo stops the app,
    naming the nearest configured service) and ``authrelay check --app`` lists them. A
    view parameter named like a service (lower case, ``-`` as ``_``) receives its
    :class:`~authrelay.services.SyncServiceClient`::

        @app.get("/repos")
        @uses("github")
        def repos(github: SyncServiceClient) -> Any: ...
    """
    declared = service_names(names, "uses()")

    def decorator(view: F) -> F:
        pairs = injected(view, declared)
        if not pairs:
            record(view, services=declared)
            return view

        def clients(kwargs: dict[str, Any]) -> dict[str, Any]:
            current = services()
            return {**kwargs, **{parameter: current[name] for parameter, name in pairs}}

        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_view(*args: Any, **kwargs: Any) -> Any:
                return await view(*args, **clients(kwargs))

            record(async_view, services=declared)
            return cast(F, async_view)

        @functools.wraps(view)
        def sync_view(*args: Any, **kwargs: Any) -> Any:
            return view(*args, **clients(kwargs))

        record(sync_view, services=declared)
        return cast(F, sync_view)

    return decorator
