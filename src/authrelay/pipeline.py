"""The per-request decision, written once for every shell (sans-IO).

A shell (ASGI, WSGI, Django sync and async, the sidecar) extracts a :class:`RequestView`
(method, path, query, the ``Authorization`` and ``Cookie`` values) and asks
:meth:`Pipeline.begin`, which answers one of:

- :class:`Pass`: call the app with this principal, these credentials and services; make
  its answer private (``Vary: Cookie``, SE-08) and set ``set_cookie`` when told so;
- :class:`Route`: a path under ``routes.prefix``; the shell reads the (bounded) body and
  drives :meth:`Route.flow`, which never raises an authrelay error;
- :class:`Reject`: the credentials were refused; answer with :meth:`Pipeline.error`
  (the shell knows ``Accept``; the ASGI shell closes a websocket instead);
- :class:`Resolve`: the caches missed; drive ``flow`` to get one of the three above.

The shell only does the I/O and maps the decision onto its framework. The view and
the decisions are plain slotted classes, not frozen ones (a frozen dataclass costs
~0.4 µs more to build, on the cached-session and cached-bearer paths); treat them as
read-only. Requests without
credentials that are not routes have a precomputed answer (:attr:`Pipeline.anonymous`)
that the shells use before building a view, so the anonymous path allocates nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._io import Flow
from .errors import AuthRelayError
from .identity.resolve import ANONYMOUS_RESOLUTION, Pending, Resolution
from .principal import ANONYMOUS, NO_CREDENTIALS, Credentials, Principal
from .responses import Response, error_response, json_response
from .routing import AuthRequest

if TYPE_CHECKING:
    from .relay import Relay

__all__ = ["MAX_BODY", "Pass", "Pipeline", "Reject", "RequestView", "Resolve", "Route"]

MAX_BODY = 64 * 1024
"""The largest body a route under the prefix reads; larger ones get 413."""

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""Methods whose body a route reads."""


@dataclass(slots=True)
class RequestView:
    """What the decision needs of a request, already extracted by the shell.

    ``path`` is the text path (no query); ``authorization`` holds every
    ``Authorization`` value (two of them are refused, BR-03); ``cookie`` is the
    ``Cookie`` header with split values joined by ``"; "``.
    """

    method: str
    path: str
    query: bytes
    authorization: list[str]
    cookie: str | None


@dataclass(slots=True)
class Pass:
    """Call the app with the caller attached."""

    principal: Principal
    credentials: Credentials
    services: Any
    set_cookie: str | None
    private: bool
    """The answer depends on the session cookie: ``Vary: Cookie``, not shared (SE-08)."""


@dataclass(slots=True)
class Reject:
    """Answer :meth:`Pipeline.error` for ``error`` instead of calling the app."""

    error: AuthRelayError


@dataclass(slots=True)
class Route:
    """A request under ``routes.prefix``, served by the router."""

    pipeline: Pipeline
    view: RequestView
    resolution: Resolution

    def flow(
        self,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        scheme: str = "http",
        client_host: str | None = None,
    ) -> Flow[Response]:
        """The route's answer: ``headers`` lower-case, first value each (Cookie joined)."""
        view = self.view
        pipeline = self.pipeline
        request = AuthRequest(
            method=view.method,
            path=view.path[len(pipeline.prefix) :] or "/",
            query_string=view.query,
            headers=headers,
            identity=self.resolution,
            body=body,
            scheme=scheme,
            client_host=client_host,
        )
        try:
            response = yield from pipeline.relay.router.handle(request)
        except AuthRelayError as exc:
            response = error_response(exc, accept=headers.get("accept"), path=view.path)
        if self.resolution.private:
            response.vary_cookie()
        return response


@dataclass(slots=True)
class Resolve:
    """The caches missed: drive ``flow`` on the shell's driver for the decision."""

    flow: Flow[Pass | Route | Reject]


Decision = Pass | Route | Reject | Resolve


class Pipeline:
    """The decision for one kind of shell (``asynchronous``: which service clients)."""

    def __init__(self, relay: Relay, *, asynchronous: bool) -> None:
        self.relay = relay
        self.asynchronous = asynchronous
        self.prefix = relay.prefix
        self._prefix_slash = relay.prefix + "/"
        self._identity = relay.identity
        self._services = relay.services
        self.anonymous = Pass(
            ANONYMOUS,
            NO_CREDENTIALS,
            # Built once: the anonymous caller's Services binds no one, so every
            # anonymous request can share it (its clients hold no request state).
            relay.services.for_request(ANONYMOUS, NO_CREDENTIALS, asynchronous=asynchronous),
            None,
            False,
        )
        self.start_pending = True
        """The background loop starts at startup (ASGI lifespan) or with the first request."""

    def start(self) -> None:
        """Start the relay's background loop, once (:meth:`Relay.start_background`)."""
        self.start_pending = False
        self.relay.start_background()

    def is_route(self, path: str) -> bool:
        """``path`` is under ``routes.prefix`` (the prefix itself included)."""
        return path == self.prefix or path.startswith(self._prefix_slash)

    def begin(self, view: RequestView) -> Decision:
        """Decide what to do with the request, without I/O when the caches allow it."""
        if not view.authorization and view.cookie is None:
            found: Resolution | Pending = ANONYMOUS_RESOLUTION
        else:
            found = self._identity.lookup(view.authorization, view.cookie, view.query)
        if isinstance(found, Pending):
            return Resolve(self._complete(view, found))
        return self.decide(view, found)

    def _complete(self, view: RequestView, pending: Pending) -> Flow[Pass | Route | Reject]:
        resolution = yield from self._identity.complete(pending)
        return self.decide(view, resolution)

    def decide(self, view: RequestView, resolution: Resolution) -> Pass | Route | Reject:
        """The decision once the caller is known."""
        path = view.path
        if path == self.prefix or path.startswith(self._prefix_slash):
            return Route(self, view, resolution)
        if resolution.error is not None:
            return Reject(resolution.error)
        principal = resolution.principal
        if principal is ANONYMOUS and resolution.set_cookie is None:
            return self.anonymous
        credentials = resolution.credentials
        services = (
            self.anonymous.services
            if principal is ANONYMOUS
            else self._services.for_request(principal, credentials, asynchronous=self.asynchronous)
        )
        return Pass(principal, credentials, services, resolution.set_cookie, resolution.private)

    def error(self, error: AuthRelayError, accept: str | None, path: str) -> Response:
        """The answer to an authrelay error, the app's or the credentials' (E-LOGIN)."""
        return error_response(error, accept=accept, login_url=self.relay.login_url(), path=path)

    @staticmethod
    def too_large() -> Response:
        """The answer to a route request whose body exceeds :data:`MAX_BODY`."""
        return json_response({"error": "request_too_large"}, 413)
