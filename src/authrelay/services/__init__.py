"""Downstream services: a lazy, request-scoped ``Services`` mapping of authorized clients.

``services["orders"]`` is a small object bound to a pooled HTTP client that exists once
per service and process; no token is fetched until the route first sends a request or
asks for ``authorization_header()``, and then it comes from the token cache whenever it
can. Building the registry does no I/O; per request, :meth:`ServiceRegistry.for_request`
allocates one small object.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

import httpx

from .._crypto import KeyRing
from .._io import AsyncDriver, Flow, SyncDriver
from ..errors import ConfigurationError, TokenStoreUnavailable, UnknownService
from ..principal import Credentials, Principal
from ..stores.shared_tokens import PURPOSE, SharedTokenStore
from ..tokens import AccessToken, TokenResponse, UserTokenSource
from .agents import AgentRuntime
from .client import AsyncServiceClient, ServiceClient, SyncServiceClient
from .options import DEFAULT_OPTIONS, CallOptions
from .runtime import ServiceRuntime
from .shared import SHARED_FLOWS

if TYPE_CHECKING:
    from ..relay import Relay

__all__ = [
    "AsyncServiceClient",
    "CallOptions",
    "ServiceClient",
    "ServiceRegistry",
    "Services",
    "SyncServiceClient",
]

logger = logging.getLogger("authrelay.services")

C = TypeVar("C", AsyncServiceClient, SyncServiceClient, ServiceClient)


class ServiceRegistry:
    """Everything about services that is built once per relay.

    ``user_tokens`` is where the connectors package registers its
    :class:`~authrelay.tokens.UserTokenSource`; until then ``connector`` services raise
    ``ReauthorizationRequired``. ``transports[name] = (async_transport, sync_transport)``
    routes a service's traffic elsewhere (tests), if set before its first request.
    """

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        settings = relay.settings
        self.names = tuple(settings.services)
        self.user_tokens: UserTokenSource | None = None
        self.transports: dict[
            str, tuple[httpx.AsyncBaseTransport | None, httpx.BaseTransport | None]
        ] = {}
        problems: list[str] = []
        self.agents: dict[str, AgentRuntime] = {}
        for name, agent in settings.agents.items():
            try:
                self.agents[name] = AgentRuntime(self, name, agent)
            except ConfigurationError as exc:
                problems.extend(exc.problems)
        self.runtimes: dict[str, ServiceRuntime] = {}
        for name, service in settings.services.items():
            try:
                self.runtimes[name] = ServiceRuntime(self, name, service)
            except ConfigurationError as exc:
                problems.extend(exc.problems)
        if problems:  # every service's problem at once, not the first
            raise ConfigurationError(list(dict.fromkeys(problems)))
        # Names are matched without regard to case (settings refuse two that differ only
        # by case); the name as written in settings stays the service's name everywhere.
        self._folded = {name.lower(): runtime for name, runtime in self.runtimes.items()}
        self._driver_lock = threading.Lock()
        self._sync_driver: SyncDriver | None = None
        self._async_driver: AsyncDriver | None = None
        self.shared = _shared_store(relay, self.runtimes.values())
        self._origins: dict[str, list[tuple[ServiceRuntime, Hashable]]] = {}
        self._origins_lock = threading.Lock()
        self._origins_cap = max(1024, sum(s.cache_size for s in settings.services.values()))
        relay.metrics.register(self._lazy_counters)
        # Tokens exchanged for a session's subject, by session record key: they end with
        # the session, here or (through the store's invalidation) in another worker.
        self._by_session: dict[str, list[tuple[ServiceRuntime, Hashable]]] = {}
        self._session_records: dict[str, set[str]] = {}
        relay.sessions.on_end.append(self.end_session)
        relay.sessions.on_destroy.append(self.destroy_session)

    def bind_subjects(self, issuers: Mapping[str, str | None]) -> None:
        """Choose each exchange service's session-subject connector (connector → issuer)."""
        problems: list[str] = []
        for runtime in self.runtimes.values():
            problems.extend(runtime.bind_subject(issuers))
        if problems:
            raise ConfigurationError(problems)

    def note_session_entry(
        self, runtime: ServiceRuntime, key: Hashable, record: str | None = None
    ) -> None:
        """Index ``runtime.cache[key]`` (and its shared ``record``) by its session, if it
        was derived from one."""
        if not (isinstance(key, tuple) and len(key) > 1 and isinstance(key[1], tuple)):
            return
        if key[1][:1] != ("session",):
            return
        session = key[1][1]
        with self._origins_lock:
            index = self._by_session
            if len(index) >= self._origins_cap:
                _prune(index)
            held = index.setdefault(session, [])
            if (runtime, key) not in held:
                held.append((runtime, key))
            if record is not None:
                if len(self._session_records) >= self._origins_cap:
                    self._session_records.clear()  # those records only age out by their TTL
                self._session_records.setdefault(session, set()).add(record)

    def end_session(self, session_key: str | None) -> None:
        """Drop the tokens derived from the session at ``session_key`` (None: all of them)."""
        with self._origins_lock:
            if session_key is None:
                ended = [item for held in self._by_session.values() for item in held]
                self._by_session.clear()
            else:
                ended = self._by_session.pop(session_key, [])
        for runtime, cache_key in ended:
            runtime.cache.discard(cache_key)

    def destroy_session(self, session_key: str) -> Flow[None]:
        """:meth:`end_session`, and delete the shared records this process made or read
        for it (a failure is logged: the records are unreachable and expire anyway)."""
        self.end_session(session_key)
        with self._origins_lock:
            records = sorted(self._session_records.pop(session_key, ()))
        shared = self.shared
        if shared is None:
            return
        for record in records:
            try:
                yield from shared.delete(record)
            except TokenStoreUnavailable:
                logger.warning("session_tokens_not_deleted reason=store_unavailable")
                return

    def _lazy_counters(self) -> Iterator[tuple[str, str, str, int]]:
        for runtime in self.runtimes.values():
            if runtime.hits:
                yield "cache_hits", runtime.name, runtime.flow, runtime.hits

    def remember(self, record: str, runtime: ServiceRuntime, key: Hashable) -> None:
        """Note that ``runtime.cache[key]`` came from the shared record ``record``."""
        with self._origins_lock:
            origins = self._origins
            if len(origins) >= self._origins_cap:
                _prune(origins)
                if len(origins) >= self._origins_cap:
                    origins.clear()  # entries not listed only age out by their TTL
            holders = origins.setdefault(record, [])
            if (runtime, key) not in holders:
                holders.append((runtime, key))

    def forget(self, key: str | None) -> None:
        """Drop in-process tokens backed by the shared record ``key`` (None: every token).

        The relay calls this when another process changed or deleted a record (Redis
        invalidation); keys of other records are ignored.
        """
        if key is None:
            with self._origins_lock:
                self._origins.clear()
            for runtime in self.runtimes.values():
                runtime.cache.clear()
            return
        if self.shared is None or not self.shared.owns(key):
            return
        with self._origins_lock:
            holders = self._origins.pop(key, [])
        for runtime, cache_key in holders:
            runtime.cache.discard(cache_key)

    @property
    def sync_driver(self) -> SyncDriver:
        """The relay's sync driver, pinned once so every thread shares one single-flight map."""
        driver = self._sync_driver
        if driver is None:
            with self._driver_lock:
                driver = self._sync_driver
                if driver is None:
                    driver = self._sync_driver = self.relay.sync_driver
        return driver

    @property
    def async_driver(self) -> AsyncDriver:
        """The relay's async driver, pinned once (see :attr:`sync_driver`)."""
        driver = self._async_driver
        if driver is None:
            with self._driver_lock:
                driver = self._async_driver
                if driver is None:
                    driver = self._async_driver = self.relay.async_driver
        return driver

    def __repr__(self) -> str:
        return f"ServiceRegistry({list(self.names)!r})"

    @overload
    def for_request(
        self, principal: Principal, credentials: Credentials, *, asynchronous: Literal[True]
    ) -> Services[AsyncServiceClient]: ...

    @overload
    def for_request(
        self, principal: Principal, credentials: Credentials, *, asynchronous: Literal[False]
    ) -> Services[SyncServiceClient]: ...

    @overload
    def for_request(
        self, principal: Principal, credentials: Credentials, *, asynchronous: bool
    ) -> Services[ServiceClient]: ...

    def for_request(
        self, principal: Principal, credentials: Credentials, *, asynchronous: bool
    ) -> Services[Any]:
        """The lazy ``Services`` for one request; costs one small allocation."""
        return Services(self, principal, credentials, asynchronous)

    def client(
        self, name: str, principal: Principal, credentials: Credentials, *, asynchronous: bool
    ) -> Any:
        """A client for ``name`` (any case) bound to this caller (no token, no network)."""
        runtime = self.runtimes.get(name) or self.runtime(name)
        if runtime is None:
            raise UnknownService(name, list(self.names))
        cls = AsyncServiceClient if asynchronous else SyncServiceClient
        return cls(runtime, principal, credentials, DEFAULT_OPTIONS)

    def runtime(self, name: str) -> ServiceRuntime | None:
        """The service called ``name`` in any case (``Graph``, ``graph``), or None."""
        return self._folded.get(name.lower()) if isinstance(name, str) else None

    def agent(self, name: str) -> AgentRuntime:
        """The configured agent ``name`` (checked at start and by ``with_options``)."""
        return self.agents[name]

    def token_from(
        self,
        response: TokenResponse,
        runtime: ServiceRuntime,
        scopes: tuple[str, ...],
        *,
        not_after: float | None,
    ) -> AccessToken:
        """An :class:`AccessToken` from a token response, never outliving ``not_after``.

        A token without ``expires_in`` gets the service's ``default_token_lifetime``;
        exchanged tokens end no later than the subject token (TX-04).
        """
        now = self.relay.clock()
        lifetime = response.expires_in or float(runtime.settings.default_token_lifetime)
        expires_at = now + lifetime
        if not_after is not None and not_after < expires_at:
            expires_at = not_after
        granted = response.scope if response.scope is not None else scopes
        return AccessToken(response.access_token, expires_at, scopes=granted)

    async def aclose(self) -> None:
        """Close pooled clients (and a pinned driver the relay no longer holds)."""
        for runtime in self.runtimes.values():
            await runtime.aclose()
        driver, self._async_driver = self._async_driver, None
        if driver is not None and driver is not getattr(self.relay, "_async_driver", None):
            await driver.client.aclose()
        self._close_sync_driver()

    def close(self) -> None:
        """Close pooled clients (and a pinned driver the relay no longer holds)."""
        for runtime in self.runtimes.values():
            runtime.close()
        self._close_sync_driver()

    def _close_sync_driver(self) -> None:
        driver, self._sync_driver = self._sync_driver, None
        if driver is not None and driver is not getattr(self.relay, "_sync_driver", None):
            driver.client.close()


def _prune(index: dict[str, list[tuple[ServiceRuntime, Hashable]]]) -> None:
    """Drop the cache keys that have left their cache, and the names left with none."""
    for name, held in list(index.items()):
        held[:] = [(runtime, key) for runtime, key in held if key in runtime.cache.entries]
        if not held:
            del index[name]


def _shared_store(relay: Relay, runtimes: Iterable[ServiceRuntime]) -> SharedTokenStore | None:
    """The shared token records when the store is shared and a service can use them."""
    store = relay.settings.store
    if store.url.startswith("memory://"):
        return None  # one process: the in-process cache and ``Shared`` are enough
    if not any(runtime.flow in SHARED_FLOWS for runtime in runtimes):
        return None
    secrets = [key.get_secret_value().encode() for key in relay.settings.secret_keys]
    if not secrets:  # settings refuse a shared store without keys (ST-02)
        return None
    return SharedTokenStore(KeyRing(secrets, PURPOSE), prefix=store.key_prefix, clock=relay.clock)


class Services(Generic[C]):
    """``services["github"]``: an authorized client per downstream service, made on first use.

    Names match without regard to case: ``services["graph"]`` is the service ``Graph``.
    ``Services[AsyncServiceClient]`` (ASGI) and ``Services[SyncServiceClient]`` (WSGI)
    give typed clients, so editors complete their methods.
    """

    __slots__ = ("_asynchronous", "_clients", "_credentials", "_principal", "_registry")

    def __init__(
        self,
        registry: ServiceRegistry,
        principal: Principal,
        credentials: Credentials,
        asynchronous: bool,
    ) -> None:
        self._registry = registry
        self._principal = principal
        self._credentials = credentials
        self._asynchronous = asynchronous
        self._clients: dict[str, Any] | None = None

    def __getitem__(self, name: str) -> C:
        clients = self._clients
        if clients is None:
            clients = self._clients = {}
        client = clients.get(name)
        if client is None:
            client = clients[name] = self._registry.client(
                name, self._principal, self._credentials, asynchronous=self._asynchronous
            )
        return client  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> C:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except UnknownService as exc:
            raise AttributeError(str(exc)) from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._registry.runtime(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry.names)

    def __len__(self) -> int:
        return len(self._registry.names)

    def __repr__(self) -> str:
        return f"Services({list(self._registry.names)!r})"
