"""Django integration: a sync-and-async middleware, a per-view ``@require``, one relay.

Settings (``settings.py``)::

    MIDDLEWARE = [..., "authrelay.django.AuthRelayMiddleware", ...]
    AUTHRELAY = {"secret_keys": [...], "bearer": {...}, ...}   # or:
    AUTHRELAY_SETTINGS_FILE = BASE_DIR / "authrelay.toml"

The middleware sets ``request.principal``, ``request.auth_credentials`` and
``request.services``, serves the connector routes under ``routes.prefix`` and renders
authrelay errors a view lets propagate. ``request.services`` clients are async for
``async def`` views under ASGI and sync otherwise (use sync views under WSGI). Under
WSGI it drives the relay's sync driver, under ASGI its async driver: never
``async_to_sync`` or a thread hop on the request path (DESIGN "One core, two shells").
The relay is built once per process and rebuilt only
when ``AUTHRELAY`` / ``AUTHRELAY_SETTINGS_FILE`` is replaced.

Defends against: views that forget to check the caller (``@require`` fails closed),
two ``Authorization`` headers folded into one by the server (still 400, BR-03), and
authrelay errors turning into Django's 500 page.
"""

from __future__ import annotations

import atexit
import functools
import http.cookies
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils.cache import patch_vary_headers

from ._io import Flow
from ._types import ASGIApp, Receive, Scope, Send
from .asgi import scope_headers
from .declare import check_app, injected, record, service_names
from .errors import AuthRelayError
from .pipeline import BODY_METHODS, MAX_BODY, Pass, Pipeline, Reject, RequestView, Resolve, Route
from .relay import Relay
from .responses import Response, error_response
from .settings import Settings
from .starlette import check
from .wsgi import _split_authorization, route_headers

__all__ = ["AuthRelayMiddleware", "get_relay", "require", "to_django", "uses", "with_lifespan"]

logger = logging.getLogger("authrelay.django")

F = TypeVar("F", bound=Callable[..., Any])
GetResponse = Callable[[HttpRequest], Any]

_lock = threading.Lock()
_built: tuple[object, Relay] | None = None


def get_relay() -> Relay:
    """The process's relay, built from ``AUTHRELAY`` or ``AUTHRELAY_SETTINGS_FILE``."""
    global _built
    from django.conf import settings as django_settings

    source = getattr(django_settings, "AUTHRELAY", None)
    path = getattr(django_settings, "AUTHRELAY_SETTINGS_FILE", None)
    if (source is None) == (path is None):
        raise ImproperlyConfigured(
            "authrelay: set exactly one of AUTHRELAY (a mapping or Settings) or "
            "AUTHRELAY_SETTINGS_FILE (a TOML file) in the Django settings"
        )
    with _lock:
        if _built is not None and (
            _built[0] is source if source is not None else _built[0] == str(path)
        ):
            return _built[1]
        if isinstance(source, Settings):
            settings = source
        elif isinstance(source, Mapping):
            settings = Settings.model_validate(dict(source))
        elif source is not None:
            raise ImproperlyConfigured("authrelay: AUTHRELAY must be a mapping or a Settings")
        else:
            settings = Settings.from_toml(str(path))
        relay = Relay(settings)
        atexit.register(relay.close)
        _built = (source if source is not None else str(path), relay)
        return relay


def check_urls(relay: Relay) -> None:
    """Check the services the project's views declare with :func:`uses` against settings."""
    check_app(_DJANGO, relay.services.names)


class _Django:
    """Stands for "the Django project" in :func:`authrelay.declare.collect`."""

    __authrelay_django__ = True


_DJANGO = _Django()


def with_lifespan(application: ASGIApp) -> ASGIApp:
    """Django's ASGI application plus ASGI ``lifespan``: the relay's clients close at shutdown.

    Django refuses ``lifespan``, so servers never tell it they stop and pooled
    connections to the identity provider are left open. Use
    ``application = with_lifespan(get_asgi_application())``.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await application(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    get_relay().start_background()
                except Exception:  # the app still starts; requests will say what is wrong
                    logger.exception("background_start_failed")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await get_relay().aclose()
                except Exception:  # shutdown must go on
                    logger.exception("relay_close_failed")
                await send({"type": "lifespan.shutdown.complete"})
                return

    app.__authrelay_django__ = True  # type: ignore[attr-defined]
    return app


class AuthRelayMiddleware:
    """Django middleware: identity, lazy services and the connector routes."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.relay = get_relay()
        check_urls(self.relay)  # Django loads middleware when the server starts
        self._async = iscoroutinefunction(get_response)
        self.pipeline = Pipeline(self.relay, asynchronous=self._async)
        if self._async:
            markcoroutinefunction(self)
            # An attribute, not a method: Django would run a sync hook in a thread.
            self.process_view = self._process_view

    def __call__(self, request: HttpRequest) -> Any:
        if self.pipeline.start_pending:  # as in the other shells; with_lifespan starts it earlier
            self.pipeline.start()
        if self._async:
            return self._acall(request)
        decision = self.pipeline.begin(_view(request, _sync_credentials(request)))
        if type(decision) is Resolve:
            decision = self.relay.sync_driver.run(decision.flow)
        if type(decision) is Route:
            answer = self._route(request, decision)
            if isinstance(answer, Response):
                return to_django(answer)
            return to_django(self.relay.sync_driver.run(answer))
        if type(decision) is Reject:
            return self._render(request, decision.error)
        assert type(decision) is Pass
        self._attach(request, decision)
        return _with_cookie(self.get_response(request), decision)

    async def _acall(self, request: HttpRequest) -> Any:
        decision = self.pipeline.begin(_view(request, _async_credentials(request)))
        if type(decision) is Resolve:
            decision = await self.relay.async_driver.run(decision.flow)
        if type(decision) is Route:
            answer = self._route(request, decision)
            if isinstance(answer, Response):
                return to_django(answer)
            return to_django(await self.relay.async_driver.run(answer))
        if type(decision) is Reject:
            return self._render(request, decision.error)
        assert type(decision) is Pass
        self._attach(request, decision)
        get_response = cast(Callable[[HttpRequest], Awaitable[Any]], self.get_response)
        return _with_cookie(await get_response(request), decision)

    async def _process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any
    ) -> None:
        """Under ASGI, give a sync view (run in a worker thread) sync service clients."""
        principal = getattr(request, "principal", None)
        if principal is not None and not iscoroutinefunction(view):
            cast(Any, request).services = self.relay.services.for_request(
                principal, cast(Any, request).auth_credentials, asynchronous=False
            )

    def process_exception(self, request: HttpRequest, exception: Exception) -> Any:
        """Render an authrelay error a view let propagate; leave the others to Django."""
        if isinstance(exception, AuthRelayError):
            return self._render(request, exception)
        return None

    def _attach(self, request: HttpRequest, decision: Pass) -> None:
        attributes = cast(Any, request)
        attributes.principal = decision.principal
        attributes.auth_credentials = decision.credentials
        attributes.services = decision.services
        attributes._authrelay_relay = self.relay

    def _render(self, request: HttpRequest, error: AuthRelayError) -> HttpResponse:
        return render_error(request, error, self.relay.login_url())

    def _route(self, request: HttpRequest, route: Route) -> Flow[Response] | Response:
        """The route's flow, or the answer when the body is too large."""
        meta = request.META
        scope = getattr(request, "scope", None)
        headers = scope_headers(scope) if scope is not None else route_headers(meta)
        try:
            length = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if route.view.method in BODY_METHODS and length > MAX_BODY:
            return self.pipeline.too_large()
        body = request.body if route.view.method in BODY_METHODS and length > 0 else b""
        return route.flow(
            headers,
            body,
            scheme=scope.get("scheme", "http") if scope else meta.get("wsgi.url_scheme", "http"),
            client_host=meta.get("REMOTE_ADDR"),
        )


def _view(request: HttpRequest, credentials: tuple[list[str], str | None, bytes]) -> RequestView:
    authorization, cookie, query = credentials
    # TR-04: the path only, never a URL rebuilt from Host.
    return RequestView(request.method or "GET", request.path_info, query, authorization, cookie)


def _sync_credentials(request: HttpRequest) -> tuple[list[str], str | None, bytes]:
    meta = request.META
    authorization = meta.get("HTTP_AUTHORIZATION")
    # The server folds repeated headers into one with ",": two bearer tokens show as a comma.
    authz = [] if authorization is None else _split_authorization(authorization)
    return authz, meta.get("HTTP_COOKIE"), meta.get("QUERY_STRING", "").encode("latin-1")


def _async_credentials(request: HttpRequest) -> tuple[list[str], str | None, bytes]:
    scope = getattr(request, "scope", None)
    if scope is None:
        return _sync_credentials(request)
    authorization: list[str] = []
    cookie: str | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization.append(value.decode("latin-1"))
        elif name == b"cookie":
            text = value.decode("latin-1")
            cookie = text if cookie is None else f"{cookie}; {text}"
    return authorization, cookie, scope.get("query_string", b"")


class _RawCookie(http.cookies.Morsel[str]):
    """A ``Set-Cookie`` line authrelay built, passed through to Django's response as is."""

    def __init__(self, line: str) -> None:
        super().__init__()
        name, _, rest = line.partition("=")
        self.set(name, rest.partition(";")[0], rest.partition(";")[0])
        self._line = line

    def OutputString(self, attrs: Any = None) -> str:
        return self._line


def _set_cookie(response: HttpResponseBase, line: str) -> None:
    cookie = _RawCookie(line)
    response.cookies[cookie.key] = cookie
    patch_vary_headers(response, ("Cookie",))  # SE-08
    response.headers["Cache-Control"] = "no-store"


def _with_cookie(response: Any, decision: Pass) -> Any:
    """The app's response; private when it depended on the session cookie (SE-08)."""
    if decision.private and isinstance(response, HttpResponseBase):
        if decision.set_cookie is not None:
            _set_cookie(response, decision.set_cookie)
        else:
            patch_vary_headers(response, ("Cookie",))
            if not response.has_header("Cache-Control"):
                response.headers["Cache-Control"] = "private"
    return response


def to_django(response: Response) -> HttpResponse:
    """An authrelay :class:`~authrelay.responses.Response` as a Django response."""
    rendered = HttpResponse(response.body, status=response.status)
    del rendered.headers["Content-Type"]
    for name, value in response.headers:
        if name.lower() == "set-cookie":
            _set_cookie(rendered, value)
        elif name in rendered.headers:
            rendered.headers[name] = f"{rendered.headers[name]}, {value}"
        else:
            rendered.headers[name] = value
    return rendered


def render_error(
    request: HttpRequest, error: AuthRelayError, login_url: str | None
) -> HttpResponse:
    """The error-model answer to ``error`` for ``request``."""
    return to_django(
        error_response(
            error, accept=request.META.get("HTTP_ACCEPT"), login_url=login_url, path=request.path
        )
    )


def require(*scopes: str, redirect_to_login: bool = True) -> Callable[[F], F]:
    """Protect a Django view (function or method, sync or async).

    Anonymous callers get 401 with an RFC 6750 challenge (API) or a 302 to the login
    route (browser, unless ``redirect_to_login=False``); callers lacking one of
    ``scopes`` get 403 ``insufficient_scope``.
    """
    required = tuple(scopes)
    for scope in required:
        if not isinstance(scope, str) or not scope or " " in scope:
            raise TypeError(f"require() takes scope names, got {scope!r}")

    def refusal(args: tuple[Any, ...]) -> HttpResponse | None:
        request = next((arg for arg in args if isinstance(arg, HttpRequest)), None)
        if request is None:
            raise TypeError("@require: the view was called without an HttpRequest")
        relay = getattr(request, "_authrelay_relay", None)
        if not isinstance(relay, Relay):
            raise RuntimeError(
                "authrelay: no principal on this request; add "
                "'authrelay.django.AuthRelayMiddleware' to MIDDLEWARE"
            )
        try:
            check(cast(Any, request).principal, cast(Any, request).auth_credentials, required)
        except AuthRelayError as exc:
            return render_error(request, exc, relay.login_url() if redirect_to_login else None)
        return None

    def decorator(view: F) -> F:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_view(*args: Any, **kwargs: Any) -> Any:
                refused = refusal(args)
                return refused if refused is not None else await view(*args, **kwargs)

            record(async_view, scopes=required)
            return cast(F, async_view)

        @functools.wraps(view)
        def sync_view(*args: Any, **kwargs: Any) -> Any:
            refused = refusal(args)
            return refused if refused is not None else view(*args, **kwargs)

        record(sync_view, scopes=required)
        return cast(F, sync_view)

    return decorator


def uses(*names: str) -> Callable[[F], F]:
    """Declare the services a Django view calls: ``@uses("github", "inventory")``.

    :class:`AuthRelayMiddleware` checks the names of every view in the URLconf against
    the settings when Django loads it (a typo stops the server, naming the nearest
    configured service); ``authrelay check --app`` lists them. A view parameter named
    like a service (lower case, ``-`` as ``_``) receives its client (sync, or async for
    an ``async def`` view under ASGI)::

        @uses("github")
        def repos(request: HttpRequest, github: SyncServiceClient) -> HttpResponse: ...
    """
    declared = service_names(names, "uses()")

    def decorator(view: F) -> F:
        pairs = injected(view, declared)
        if not pairs:
            record(view, services=declared)
            return view

        def clients(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            request = next((arg for arg in args if isinstance(arg, HttpRequest)), None)
            current = getattr(request, "services", None)
            if current is None:
                raise RuntimeError(
                    "authrelay: no services on this request; add "
                    "'authrelay.django.AuthRelayMiddleware' to MIDDLEWARE"
                )
            return {**kwargs, **{parameter: current[name] for parameter, name in pairs}}

        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_view(*args: Any, **kwargs: Any) -> Any:
                return await view(*args, **clients(args, kwargs))

            record(async_view, services=declared)
            return cast(F, async_view)

        @functools.wraps(view)
        def sync_view(*args: Any, **kwargs: Any) -> Any:
            return view(*args, **clients(args, kwargs))

        record(sync_view, services=declared)
        return cast(F, sync_view)

    return decorator
