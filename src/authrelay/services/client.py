"""``ServiceClient``: an authorized client for one service, bound to one caller.

The async client (ASGI) and the sync client (WSGI) share one authorization flow
(:func:`_auth_flow`, httpx ``Auth`` style) and differ only in how they run it.

Defends against (DS-01, DS-03):

- a credential sent to another origin: only requests to the service's own origin get
  one (absolute URLs elsewhere go out bare);
- retry loops: a downstream 401 drops that token, acquires a fresh one and retries once,
  only when the request body can be replayed and the challenge does not name another
  error than ``invalid_token``; a second 401 is returned as it is; a 401 to a streamed
  (non-replayable) request is returned as it is, but its token is replaced for later calls;
- repeating what must not be repeated: with ``retry_idempotent``, only idempotent
  methods (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, PUT, DELETE) with a replayable body are
  retried after 429, 502, 503 or 504, at most :data:`~.runtime.TRANSIENT_RETRIES` times, after
  the ``Retry-After`` the server asked for (or a short backoff); a ``Retry-After``
  beyond :data:`MAX_RETRY_WAIT` is not waited for: the answer is returned as it is.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Generator, Hashable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Self

import httpx

from .._json import parse_value
from ..errors import AuthRelayError, DownstreamClientError, DownstreamServerError
from ..observability import span
from ..principal import Credentials, Principal
from ..tokens.endpoint import delay_seconds
from .acquire import header_flow
from .options import (
    ACTOR_FLOWS,
    DEFAULT_OPTIONS,
    ENTRA_FLOWS,
    CallOptions,
    check_agent_options,
)
from .runtime import ServiceRuntime

logger = logging.getLogger("authrelay.services")
_DEPTH = 128
"""Nesting allowed in a downstream JSON answer (``call``): generous, far from the stack's."""

__all__ = ["AsyncServiceClient", "ServiceClient", "SyncServiceClient"]

_UNSET: Any = object()

MAX_RETRY_WAIT = 5.0
"""Longest wait before such a retry; a later ``Retry-After`` returns the answer instead."""
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_TRANSIENT = frozenset({429, 502, 503, 504})
_FIRST_BACKOFF = 0.2


@dataclass(frozen=True, slots=True)
class _Need:
    """Effect of the auth flow: a credential, fresh when ``stale`` is the refused one."""

    stale: str | None = None
    drop: bool = False
    """Only replace the refused credential for later calls; this request is not resent."""


@dataclass(frozen=True, slots=True)
class _Wait:
    """Effect of the auth flow: wait ``seconds`` before sending again."""

    seconds: float


def _retry_delay(response: httpx.Response, attempt: int) -> float | None:
    """Seconds to wait before retrying ``response``'s request; None when too long."""
    value = response.headers.get("retry-after", "").strip()
    seconds = delay_seconds(response)
    delay: float
    if seconds is not None:
        delay = float(seconds)
    elif value:
        try:
            delay = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            delay = _FIRST_BACKOFF * 2**attempt
    else:
        delay = _FIRST_BACKOFF * 2**attempt * random.uniform(0.8, 1.2)
    delay = max(0.0, delay)
    return None if delay > MAX_RETRY_WAIT else delay


def _replayable(request: httpx.Request) -> bool:
    try:
        request.content  # noqa: B018 - raises when the body is a one-shot stream
    except httpx.RequestNotRead:
        return False
    return True


def _invalid_token_challenge(response: httpx.Response) -> bool:
    """True unless the challenge names an error other than ``invalid_token`` (RFC 6750 §3)."""
    challenge = response.headers.get("www-authenticate", "")
    if "error=" not in challenge:
        return True
    return "invalid_token" in challenge


def _auth_flow(
    runtime: ServiceRuntime, request: httpx.Request
) -> Generator[httpx.Request | _Need | _Wait, Any, None]:
    if not runtime.same_origin(request.url):
        yield request
        return
    header: str = yield _Need()
    runtime.attach(request, header)
    response: httpx.Response = yield request
    if response.status_code == 401 and runtime.retry_on_401 and _invalid_token_challenge(response):
        if not _replayable(request):
            # A streamed body cannot be sent again: this 401 is the answer, but the refused
            # token must not serve the next call (DS-03).
            yield _Need(stale=header, drop=True)
            return
        fresh: str = yield _Need(stale=header)
        if fresh == header:
            return
        runtime.attach(request, fresh)
        response = yield request
    if request.method not in _IDEMPOTENT or not _replayable(request):
        return
    for attempt in range(runtime.transient_retries):
        if response.status_code not in _TRANSIENT:
            return
        delay = _retry_delay(response, attempt)
        if delay is None:
            return
        yield _Wait(delay)
        response = yield request


def _drop_failed(client: _Base, exc: AuthRelayError) -> None:
    logger.warning(
        "downstream_401_token_replacement_failed service=%s error=%s", client.name, exc.error
    )


class _Auth(httpx.Auth):
    __slots__ = ("_client",)

    def __init__(self, client: _Base) -> None:
        self._client = client

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        client = self._client
        assert isinstance(client, SyncServiceClient)
        flow = _auth_flow(client._runtime, request)
        value: Any = None
        while True:
            try:
                effect = flow.send(value)
            except StopIteration:
                return
            if isinstance(effect, _Need) and effect.drop:
                try:
                    client._header(effect.stale)
                except AuthRelayError as exc:  # the 401 is still the answer to this call
                    _drop_failed(client, exc)
                value = None
            elif isinstance(effect, _Need):
                stale = effect.stale
                # The warm path: a cache hit needs neither the acquisition flow nor its span.
                value = (client._cached() if stale is None else None) or client._header(stale)
            elif isinstance(effect, _Wait):
                time.sleep(effect.seconds)
                value = None
            else:
                value = yield effect

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        client = self._client
        assert isinstance(client, AsyncServiceClient)
        flow = _auth_flow(client._runtime, request)
        value: Any = None
        while True:
            try:
                effect = flow.send(value)
            except StopIteration:
                return
            if isinstance(effect, _Need) and effect.drop:
                try:
                    await client._header(effect.stale)
                except AuthRelayError as exc:  # the 401 is still the answer to this call
                    _drop_failed(client, exc)
                value = None
            elif isinstance(effect, _Need):
                stale = effect.stale
                # The warm path: a cache hit needs neither the acquisition flow nor its span.
                value = (client._cached() if stale is None else None) or await client._header(stale)
            elif isinstance(effect, _Wait):
                await asyncio.sleep(effect.seconds)
                value = None
            else:
                value = yield effect


def _joined(runtime: ServiceRuntime, url: str | httpx.URL) -> str | httpx.URL:
    """``/path`` joined to the base URL as httpx would join it, without its second parse."""
    prefix = runtime.url_prefix
    if prefix is not None and type(url) is str and url[:1] == "/" and url[1:2] != "/":
        return prefix + url[1:]
    return url


def _decode(response: httpx.Response, service: str) -> Any:
    status = response.status_code
    if status >= 500:
        raise DownstreamServerError(
            f"{service} answered HTTP {status}",
            status_code=status,
            body=response.content,
            service=service,
        )
    if status >= 400:
        raise DownstreamClientError(
            f"{service} answered HTTP {status}",
            status_code=status,
            body=response.content,
            service=service,
        )
    if not response.content:
        return None
    # the bounded parser: a hostile answer raises ValueError, never RecursionError
    return parse_value(response.content, max_bytes=len(response.content), max_depth=_DEPTH)


class _Base:
    __slots__ = ("_auth", "_cache", "_credentials", "_key", "_options", "_principal", "_runtime")

    def __init__(
        self,
        runtime: ServiceRuntime,
        principal: Principal,
        credentials: Credentials,
        options: CallOptions = DEFAULT_OPTIONS,
    ) -> None:
        self._runtime = runtime
        self._cache = runtime.cache.entries
        self._principal = principal
        self._credentials = credentials
        self._options = options
        self._key: Hashable | None = _UNSET
        self._auth = _Auth(self)

    @property
    def name(self) -> str:
        """The service's name in settings."""
        return self._runtime.name

    @property
    def base_url(self) -> str:
        """The service's base URL."""
        return self._runtime.base_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._runtime.name!r}, {self._runtime.base_url!r})"

    def _make_key(self) -> Hashable | None:
        key = self._key = self._runtime.key(self._principal, self._credentials, self._options)
        return key

    def _cached(self) -> str | None:
        """The header from the cache when it is warm and unexpired, else None."""
        key = self._key
        if key is _UNSET:
            key = self._make_key()
        runtime = self._runtime
        entry = self._cache.get(key)
        if entry is not None and entry.use_until > runtime.clock():
            runtime.hits += 1
            return entry.header
        return None

    def with_options(
        self,
        *,
        scopes: Iterable[str] | None = None,
        tenant: str | None = None,
        actor: str | None = None,
        app_token: bool | None = None,
        token_endpoint_params: Mapping[str, str] | None = None,
        agent_user: str | None = None,
        agent_user_id: str | None = None,
    ) -> Self:
        """A client for the same caller with per-call overrides, cached under its own key.

        ``tenant`` needs ``{tenant}`` in the service's ``token_endpoint``; ``actor`` must
        name a configured agent, on a call that can carry it: a token exchange (the agent
        becomes ``act``) or an app token (the agent's own; pass ``app_token=True`` in the
        same call for a service of another flow). ``agent_user`` (a UPN) or
        ``agent_user_id`` (an object id), never both, asks an Entra agent (``actor`` with
        ``kind = "entra"``) for its agent user's token, whoever the caller is. Invalid
        overrides raise ``ValueError``.
        """
        runtime = self._runtime
        if tenant is not None and "{tenant}" not in (runtime.settings.token_endpoint or ""):
            raise ValueError(
                f"service {runtime.name!r} has no {{tenant}} in its token_endpoint; "
                "a tenant override cannot apply"
            )
        if actor is not None and actor not in runtime.registry.agents:
            raise ValueError(f"no agent named {actor!r} is configured")
        wants_user = agent_user is not None or agent_user_id is not None
        options = self._options.merged(
            scopes=scopes,
            tenant=tenant,
            actor=actor,
            app_token=True if wants_user else app_token,
            token_endpoint_params=token_endpoint_params,
            agent_user=agent_user,
            agent_user_id=agent_user_id,
        )
        flow = runtime.effective_flow(options)
        check_agent_options(runtime, options, flow)
        entra = options.actor is not None and runtime.registry.agent(options.actor).entra
        if options.actor is not None and flow not in (ENTRA_FLOWS if entra else ACTOR_FLOWS):
            raise ValueError(
                f"service {runtime.name!r} uses flow {flow!r}, which cannot carry an actor: "
                "only a token exchange (as act) or an app token (app_token=True) can"
            )
        return type(self)(runtime, self._principal, self._credentials, options)


class AsyncServiceClient(_Base):
    """The client a route gets under ASGI: ``await services["x"].get("/path")``."""

    __slots__ = ()

    async def authorization_header(self) -> str:
        """The credential's header value (``Bearer …``); from cache whenever it can."""
        header = self._cached()
        return header if header is not None else await self._header(None)

    async def _header(self, stale: str | None) -> str:
        key = self._key
        if key is _UNSET:
            key = self._make_key()
        runtime = self._runtime
        flow = header_flow(
            runtime, self._principal, self._credentials, self._options, key, stale=stale
        )
        with span("authrelay.acquire_token", service=runtime.name, flow=runtime.flow):
            return await runtime.registry.async_driver.run(flow)

    async def request(self, method: str, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """Send a request through the pooled client with this caller's authorization."""
        kwargs["auth"] = self._auth
        runtime = self._runtime
        url = _joined(runtime, url)
        with span("authrelay.downstream", service=runtime.name, method=method):
            return await runtime.async_client.request(method, url, **kwargs)

    async def get(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``GET``."""
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``POST``."""
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``PUT``."""
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``PATCH``."""
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``DELETE``."""
        return await self.request("DELETE", url, **kwargs)

    async def call(
        self,
        path: str,
        method: str = "GET",
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Call ``path`` and return the decoded JSON; 4xx/5xx raise typed errors."""
        response = await self.request(method, path, json=json, params=params)
        return _decode(response, self._runtime.name)


class SyncServiceClient(_Base):
    """The client a route gets under WSGI: ``services["x"].get("/path")``."""

    __slots__ = ()

    def authorization_header(self) -> str:
        """The credential's header value (``Bearer …``); from cache whenever it can."""
        header = self._cached()
        return header if header is not None else self._header(None)

    def _header(self, stale: str | None) -> str:
        key = self._key
        if key is _UNSET:
            key = self._make_key()
        runtime = self._runtime
        flow = header_flow(
            runtime, self._principal, self._credentials, self._options, key, stale=stale
        )
        with span("authrelay.acquire_token", service=runtime.name, flow=runtime.flow):
            return runtime.registry.sync_driver.run(flow)

    def request(self, method: str, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """Send a request through the pooled client with this caller's authorization."""
        kwargs["auth"] = self._auth
        runtime = self._runtime
        url = _joined(runtime, url)
        with span("authrelay.downstream", service=runtime.name, method=method):
            return runtime.sync_client.request(method, url, **kwargs)

    def get(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``GET``."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``POST``."""
        return self.request("POST", url, **kwargs)

    def put(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``PUT``."""
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``PATCH``."""
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``DELETE``."""
        return self.request("DELETE", url, **kwargs)

    def call(
        self,
        path: str,
        method: str = "GET",
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Call ``path`` and return the decoded JSON; 4xx/5xx raise typed errors."""
        response = self.request(method, path, json=json, params=params)
        return _decode(response, self._runtime.name)


ServiceClient = AsyncServiceClient | SyncServiceClient
"""Either client; both have the same method names."""
