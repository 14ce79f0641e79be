"""The relay: everything derivable from settings, built once and shared by requests.

Invariants (checked by the tests):

1. Nothing request-specific is kept here; per request the shells build a
   :class:`~authrelay.principal.Principal` and a lazy ``Services`` and nothing else.
2. One HTTP client for identity providers per relay and per mode (async/sync), and one
   pooled client per downstream service (``services``), never one per request.
3. No I/O at construction: discovery, JWKS and stores are reached on first need.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from ._io import AsyncDriver, Flow, SyncDriver
from ._types import Clock
from .errors import ConfigurationError
from .health import Readiness, readiness
from .identity.resolve import BearerCheck, IdentityResolver
from .identity.session import SessionManager
from .observability import Stats, install_redaction
from .responses import Response
from .router import Router, no_routes
from .routing import AuthRequest
from .services import ServiceRegistry
from .settings import Settings
from .stores import open_backends

__all__ = ["Relay", "check_startup"]

_T = TypeVar("_T")

logger = logging.getLogger("authrelay.relay")


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
        self.store_label = _store_label(settings.store.url)
        self.prefix = settings.routes.prefix
        self._async_driver: AsyncDriver | None = None
        self._sync_driver: SyncDriver | None = None
        self._driver_lock = threading.Lock()
        self.route_handler: Callable[[AuthRequest], Flow[Response]] = no_routes
        """The connector routes; :attr:`router` serves them with ``/stats`` and not found."""
        self.router = Router(self)
        try:
            self._build(settings)
        except BaseException:
            self.backend.close()
            raise
        subscribe = getattr(self.backend, "subscribe", None)
        if subscribe is not None:  # another process changed a key: drop what we cached of it
            subscribe(self._invalidate)
        install_redaction()

    def _build(self, settings: Settings) -> None:
        """Build every part, collecting the start-up problems of all of them (one error)."""
        problems: list[str] = []
        self.sessions = SessionManager(settings, clock=self.clock)
        self.sessions.metrics = self.metrics
        self.bearer: BearerCheck | None = None
        if settings.bearer is not None:
            from .identity.bearer import BearerVerifier

            verifier = _gather(problems, lambda: BearerVerifier(settings, clock=self.clock))
            if verifier is not None:
                verifier.metrics = self.metrics
                self.metrics.register(lambda: _bearer_hits(verifier))
            self.bearer = verifier
        self.identity = IdentityResolver(self.sessions, self.bearer)
        services = _gather(problems, lambda: ServiceRegistry(self))
        if settings.connectors:
            from .connectors import ConnectorRegistry

            connectors = _gather(problems, lambda: ConnectorRegistry(self))
            if connectors is not None:
                self.connectors = connectors
                self.route_handler = connectors.routes.handle
        if settings.admin.enabled and not settings.connectors:
            problems.append("admin.enabled: no connectors are configured, nothing to manage")
        if problems or services is None:
            raise ConfigurationError(list(dict.fromkeys(problems)))
        self.services = services
        if settings.connectors:
            services.user_tokens = self.connectors.tokens
        services.bind_subjects(self.connectors.issuers() if settings.connectors else {})

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
            self._async_driver = AsyncDriver(
                client, self.async_backend, metrics=self.metrics, store_label=self.store_label
            )
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
                    driver = self._sync_driver = SyncDriver(
                        client, self.backend, metrics=self.metrics, store_label=self.store_label
                    )
        return driver

    def _invalidate(self, key: str | None) -> None:
        self.sessions.forget(key)
        forget = getattr(self.services, "forget", None)
        if forget is not None:
            forget(key)
        connectors = getattr(self, "connectors", None)
        if connectors is not None:
            connectors.forget(key)

    def handle_route(self, request: AuthRequest) -> Flow[Response]:
        """Serve a request under ``routes.prefix`` (:meth:`authrelay.router.Router.handle`)."""
        return self.router.handle(request)

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

    async def astartup(self) -> None:
        """Read back the stored connector records (ASGI lifespan startup; else the first
        request does it). A store that cannot be read leaves the settings in force."""
        connectors = getattr(self, "connectors", None)
        if connectors is not None:
            try:
                await self.async_driver.run(connectors.refresh(force=True))
            except Exception:  # start-up must go on; tried again within admin.refresh_interval
                logger.exception("connector_records_startup_failed")

    def ready(self) -> Readiness:
        """Readiness for WSGI apps: store reachable, provider metadata and keys loadable.

        Truthy when ready; ``.checks`` names each dependency's status. Under ASGI use
        :meth:`aready`.
        """
        return self.sync_driver.run(readiness(self))

    async def aready(self) -> Readiness:
        """:meth:`ready` for ASGI apps (runs on the event loop)."""
        return await self.async_driver.run(readiness(self))

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
        if self._async_driver is not None:
            await self._async_driver.aclose()  # follow-ups (revocation retries...)
        await self.services.aclose()
        if self._async_driver is not None:
            await self._async_driver.client.aclose()
        await self.async_backend.aclose()

    def close(self) -> None:
        """Stop the background loop; close HTTP clients and stores (WSGI, at exit)."""
        connectors = getattr(self, "connectors", None)
        if connectors is not None:
            connectors.maintenance.stop()
        if self._sync_driver is not None:
            self._sync_driver.close()
        self.services.close()
        if self._sync_driver is not None:
            self._sync_driver.client.close()
        self.backend.close()


def check_startup(settings: Settings) -> None:
    """Run every rule :class:`Relay` runs at start, with no I/O; raise if any fails.

    The relay is built exactly as the app builds it (sessions, bearer verifier,
    services, connectors and their rules), with a memory store standing in for the
    configured one so no file, socket or provider is touched, and then dropped.
    Raises :class:`~authrelay.ConfigurationError` listing every problem.
    """
    store = settings.store.model_copy(update={"url": "memory://", "replica_acks": 0})
    Relay(settings.model_copy(update={"store": store})).close()


def _gather(problems: list[str], build: Callable[[], _T]) -> _T | None:
    try:
        return build()
    except ConfigurationError as exc:
        problems.extend(exc.problems)
        return None


def _bearer_hits(verifier: Any) -> list[tuple[str, str, str, int]]:
    hits: int = verifier.hits
    return [("bearer_verifications", "", "cached", hits)] if hits else []


def _store_label(url: str) -> str:
    scheme = url.split(":", 1)[0].lower()
    return "redis" if scheme.startswith("redis") else scheme
