"""The relay: everything derivable from settings, built once and shared by requests.

Invariants (checked by the tests):

1. Nothing request-specific is kept here; per request the shells build a
   :class:`~authrelay.principal.Principal` and a lazy ``Services`` and nothing else.
2. One HTTP client for identity providers per relay and per mode (async/sync), and one
   pooled client per downstream service (``services``), never one per request.
3. No I/O at construction: discovery, JWKS and stores are reached on first need.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from ._io import AsyncDriver, Flow, SyncDriver
from ._types import Clock
from .identity.resolve import BearerCheck, IdentityResolver
from .identity.session import SessionManager
from .observability import Stats, install_redaction
from .responses import Response, json_response
from .routing import AuthRequest
from .services import ServiceRegistry
from .settings import Settings
from .stores import open_backends

__all__ = ["Relay"]


class Relay:
    """Built once from :class:`~authrelay.Settings`; shared by the ASGI and WSGI shells.

    ``idp_transport`` / ``idp_sync_transport`` let tests route identity-provider traffic
    to an in-process app (``IdentityProvider.transport()``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = time.time,
        idp_transport: httpx.AsyncBaseTransport | None = None,
        idp_sync_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = Stats()
        self._idp_transport = idp_transport
        self._idp_sync_transport = idp_sync_transport
        self.backend, self.async_backend = open_backends(settings.store, clock=clock)
        self.sessions = SessionManager(settings, clock=clock)
        self.bearer: BearerCheck | None = None
        if settings.bearer is not None:
            from .identity.bearer import BearerVerifier

            self.bearer = BearerVerifier(settings, clock=clock)
        self.identity = IdentityResolver(self.sessions, self.bearer)
        self.services = ServiceRegistry(self)
        self.prefix = settings.routes.prefix
        self._async_driver: AsyncDriver | None = None
        self._sync_driver: SyncDriver | None = None
        self._driver_lock = threading.Lock()
        self.route_handler: Callable[[AuthRequest], Flow[Response]] = _no_routes
        if settings.connectors:
            from .connectors import ConnectorRegistry

            self.connectors = ConnectorRegistry(self)
            self.route_handler = self.connectors.routes.handle
            self.services.user_tokens = self.connectors.tokens
        subscribe = getattr(self.backend, "subscribe", None)
        if subscribe is not None:  # another process changed a key: drop what we cached of it
            subscribe(self._invalidate)
        install_redaction()

    def __repr__(self) -> str:
        return (
            f"Relay(services={list(self.settings.services)!r}, "
            f"connectors={list(self.settings.connectors)!r})"
        )

    def _timeout(self) -> httpx.Timeout:
        http = self.settings.http
        return httpx.Timeout(http.token_timeout, connect=http.connect_timeout)

    @property
    def async_driver(self) -> AsyncDriver:
        """Driver for flows under ASGI (made on first use)."""
        if self._async_driver is None:
            client = httpx.AsyncClient(
                transport=self._idp_transport, timeout=self._timeout(), follow_redirects=False
            )
            self._async_driver = AsyncDriver(client, self.async_backend)
        return self._async_driver

    @property
    def sync_driver(self) -> SyncDriver:
        """Driver for flows under WSGI (made on first use)."""
        driver = self._sync_driver
        if driver is None:
            with self._driver_lock:  # threads of a WSGI server may all arrive first at once
                driver = self._sync_driver
                if driver is None:
                    client = httpx.Client(
                        transport=self._idp_sync_transport,
                        timeout=self._timeout(),
                        follow_redirects=False,
                    )
                    driver = self._sync_driver = SyncDriver(client, self.backend)
        return driver

    def _invalidate(self, key: str | None) -> None:
        self.sessions.forget(key)
        forget = getattr(self.services, "forget", None)
        if forget is not None:
            forget(key)

    def handle_route(self, request: AuthRequest) -> Flow[Response]:
        """Serve a request under ``routes.prefix``: ``/stats`` when enabled, else connectors."""
        if request.path == "/stats" and self.settings.routes.stats:
            if request.method != "GET":
                return json_response({"error": "method_not_allowed"}, 405, [("allow", "GET")])
            return json_response(self.stats())
        response = yield from self.route_handler(request)
        return response

    def login_url(self) -> str | None:
        """Where browsers without a session are sent (E-LOGIN), if anywhere."""
        routes = self.settings.routes
        if not routes.login_redirect:
            return None
        connector = routes.default_connector
        if connector is None and len(self.settings.connectors) == 1:
            connector = next(iter(self.settings.connectors))
        return None if connector is None else f"{self.prefix}/{connector}/login"

    def stats(self) -> dict[str, Any]:
        """Counters and latencies per service/connector and flow (no secrets, no subjects)."""
        return self.metrics.snapshot()

    def start_background(self) -> bool:
        """Start proactive refresh and webhook delivery, if configured; idempotent.

        Under ASGI (called on the event loop) an asyncio task, else a daemon thread. The
        middlewares call it at ``lifespan.startup`` or on the first request; :meth:`aclose`
        and :meth:`close` stop it. False when there is nothing to run or it already runs.
        """
        connectors = getattr(self, "connectors", None)
        return False if connectors is None else bool(connectors.maintenance.start())

    async def aclose(self) -> None:
        """Stop the background loop; close HTTP clients and stores (ASGI lifespan shutdown)."""
        connectors = getattr(self, "connectors", None)
        if connectors is not None:
            await connectors.maintenance.astop()
        await self.services.aclose()
        if self._async_driver is not None:
            await self._async_driver.client.aclose()
        await self.async_backend.aclose()

    def close(self) -> None:
        """Stop the background loop; close HTTP clients and stores (WSGI, at exit)."""
        connectors = getattr(self, "connectors", None)
        if connectors is not None:
            connectors.maintenance.stop()
        self.services.close()
        if self._sync_driver is not None:
            self._sync_driver.client.close()
        self.backend.close()


def _no_routes(request: AuthRequest) -> Flow[Response]:
    yield from ()
    return json_response({"error": "not_found"}, 404)
