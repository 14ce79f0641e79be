"""Sans-IO plumbing: protocol logic is written once as generators, run by two drivers.

A *flow* is a generator that yields effects and receives their results:

- ``httpx.Request``  → the driver sends it to an identity provider and sends back the
  ``httpx.Response`` (body read, size-capped); transport failures are *thrown into* the
  flow as :class:`TransportFailure`, so retry policy lives in the protocol code;
- :class:`StoreOp`   → the driver calls that method of the store (async or sync view);
- :class:`Sleep`     → the driver waits (``anyio.sleep`` / ``time.sleep``);
- :class:`Hook`      → the driver calls an application hook (``on_sign_in``...): under
  ASGI a coroutine function is awaited and a plain function runs in a worker thread
  (never on the event loop); under WSGI a plain function runs inline, an async one is
  refused;
- :class:`Spawn`     → the driver runs a follow-up flow after the response, bounded and
  stopped at shutdown (:mod:`authrelay._spawn`);
- :class:`Shared`    → single-flight: the driver runs ``Shared.flow()`` once per key at a
  time; concurrent flows yielding the same key wait and receive the same result or
  error (asyncio tasks under ASGI, threads under WSGI).

:class:`AsyncDriver` (ASGI) and :class:`SyncDriver` (WSGI) own the I/O. No flow ever
blocks an event loop, starts one, or hops threads (DESIGN "One core, two shells").

Defends against (TR-02, TR-03): unbounded bodies from an identity provider, drip-fed
responses (a total deadline), cross-origin redirects on metadata fetches, and any
redirect on POST.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Generator, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import anyio
import httpx

from . import _deadline
from ._spawn import AsyncSpawner, Cancelled, SyncSpawner

__all__ = [
    "AsyncDriver",
    "Call",
    "Effect",
    "Flow",
    "Hook",
    "ResponseTooLarge",
    "Shared",
    "Sleep",
    "Spawn",
    "StoreOp",
    "SyncDriver",
    "TransportFailure",
    "send",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` before going on (backoff between retries)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class StoreOp:
    """Call ``store.<name>(*args)`` on the driver's store and return its result."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Hook:
    """Call ``function(*args)``: an application hook, sync or (under ASGI only) async.

    Under ASGI a plain function runs in a worker thread, so a hook that blocks (a
    database lookup in ``on_sign_in``) never holds up the event loop.
    """

    function: Callable[..., Any]
    args: tuple[Any, ...] = ()


Call = Hook
"""The former name of :class:`Hook`."""


@dataclass(frozen=True, slots=True)
class Spawn:
    """Run the flow ``factory()`` after the current response, on the same driver.

    The effect answers True when the follow-up was started or queued, False when it
    was dropped (backlog full, driver closed): see :mod:`authrelay._spawn`.
    """

    name: str
    factory: Callable[[], Flow[Any]]


@dataclass(frozen=True, slots=True)
class Shared:
    """Run ``flow()`` once for ``key`` among concurrent callers and share its outcome."""

    key: Hashable
    flow: Callable[[], Flow[Any]]


Effect: TypeAlias = "httpx.Request | StoreOp | Sleep | Shared | Hook | Spawn"
Flow: TypeAlias = Generator[Effect, Any, T]


class TransportFailure(Exception):
    """A request to an identity provider failed below HTTP.

    ``reached`` is False only when the request provably never reached the server
    (connection refused, connect timeout): only then may a refresh or a code redemption
    be retried (RT-04, AC-08).
    """

    def __init__(self, message: str, *, reached: bool, timeout: bool) -> None:
        super().__init__(message)
        self.reached = reached
        self.timeout = timeout


class ResponseTooLarge(Exception):
    """A response body exceeded the cap for its kind (TR-03)."""


_MAX_BYTES_KEY = "authrelay.max_bytes"
_DEADLINE_KEY = "authrelay.total_timeout"
_REDIRECTS = 3
_CONNECT_TIMEOUT = 3.0  # TR-03


def send(request: httpx.Request, *, max_bytes: int, total_timeout: float) -> Flow[httpx.Response]:
    """Yield ``request`` with its limits attached; return the response (a sub-flow)."""
    request.extensions[_MAX_BYTES_KEY] = max_bytes
    request.extensions[_DEADLINE_KEY] = total_timeout
    # No single phase (connect, a read before the headers) may outlast the total deadline.
    request.extensions.setdefault(
        "timeout",
        httpx.Timeout(total_timeout, connect=min(_CONNECT_TIMEOUT, total_timeout)).as_dict(),
    )
    response: httpx.Response = yield request
    return response


def _translate(exc: httpx.HTTPError) -> TransportFailure:
    if isinstance(exc, httpx.ConnectTimeout):
        return TransportFailure("connect timeout", reached=False, timeout=True)
    if isinstance(exc, httpx.ConnectError):
        return TransportFailure("connection failed", reached=False, timeout=False)
    if isinstance(exc, httpx.TimeoutException):
        return TransportFailure("timed out", reached=True, timeout=True)
    return TransportFailure(type(exc).__name__, reached=True, timeout=False)


def _next_redirect(
    request: httpx.Request, response: httpx.Response, hops: int
) -> httpx.Request | None:
    """Follow a redirect only for GET, same origin, at most 3 hops (TR-02)."""
    if not response.is_redirect or request.method != "GET" or hops >= _REDIRECTS:
        return None
    target = request.url.join(response.headers.get("location", ""))
    if (target.scheme, target.host, target.port) != (
        request.url.scheme,
        request.url.host,
        request.url.port,
    ):
        return None
    follow = httpx.Request("GET", target, headers=request.headers)
    follow.extensions.update(request.extensions)
    return follow


def _limits(request: httpx.Request) -> tuple[int, float]:
    return (
        int(request.extensions.get(_MAX_BYTES_KEY, 64 * 1024)),
        float(request.extensions.get(_DEADLINE_KEY, 10.0)),
    )


class _AsyncCall:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class _SyncCall:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class AsyncDriver:
    """Runs flows with an ``httpx.AsyncClient`` and an async store view (ASGI)."""

    __slots__ = ("_inflight", "_spawner", "client", "metrics", "store", "store_label")

    def __init__(
        self, client: httpx.AsyncClient, store: Any = None, *, metrics: Any = None,
        store_label: str = "",
    ) -> None:  # fmt: skip
        self.client = client
        self.store = store
        self.metrics = metrics
        self.store_label = store_label
        self._inflight: dict[Hashable, _AsyncCall] = {}
        self._spawner: AsyncSpawner | None = None

    @property
    def spawner(self) -> AsyncSpawner:
        """The follow-ups started with :class:`Spawn` (created on first use)."""
        if self._spawner is None:
            self._spawner = AsyncSpawner(self)
        return self._spawner

    async def aclose(self) -> None:
        """Cancel the follow-ups and wait for them; the HTTP client stays open."""
        if self._spawner is not None:
            await self._spawner.aclose()

    async def run(self, flow: Flow[T]) -> T:
        """Drive ``flow`` to completion and return its value."""
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = flow.throw(error) if error is not None else flow.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value, error = None, None
            try:
                value = await self._perform(effect)
            except Exception as exc:  # delivered into the flow, which decides
                error = exc

    async def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, httpx.Request):
            return await self._http(effect)
        if isinstance(effect, StoreOp):
            if self.metrics is None:
                return await getattr(self.store, effect.name)(*effect.args, **(effect.kwargs or {}))
            started = time.perf_counter()
            failed = True
            try:
                value = await getattr(self.store, effect.name)(
                    *effect.args, **(effect.kwargs or {})
                )
                failed = False
                return value
            finally:
                _store_observed(self.metrics, self.store_label, effect.name, started, failed)
        if isinstance(effect, Shared):
            return await self._shared(effect)
        if isinstance(effect, Hook):
            function = effect.function
            if inspect.iscoroutinefunction(function):
                return await function(*effect.args)
            # a plain function (or an object whose __call__ returns an awaitable)
            result = await anyio.to_thread.run_sync(function, *effect.args)
            return await result if inspect.isawaitable(result) else result
        if isinstance(effect, Spawn):
            return self.spawner.spawn(effect.name, effect.factory)
        await anyio.sleep(effect.seconds)
        return None

    async def _shared(self, effect: Shared) -> Any:
        call = self._inflight.get(effect.key)
        if call is not None:
            if self.metrics is not None:
                _waiter(self.metrics, effect.key)
            await call.done.wait()
        else:
            call = self._inflight[effect.key] = _AsyncCall()
            try:
                call.value = await self.run(effect.flow())
            except Exception as exc:
                call.error = exc
            except BaseException:
                # The leader was cancelled: its waiters must not take None for a result.
                call.error = TransportFailure(
                    "the shared call was cancelled", reached=True, timeout=False
                )
                raise
            finally:
                del self._inflight[effect.key]
                call.done.set()
        if call.error is not None:
            raise call.error
        return call.value

    async def _http(self, request: httpx.Request) -> httpx.Response:
        max_bytes, total = _limits(request)
        try:
            with anyio.fail_after(total):
                for hops in range(_REDIRECTS + 1):
                    response = await self.client.send(request, stream=True)
                    try:
                        body = bytearray()
                        async for chunk in response.aiter_bytes():
                            body += chunk
                            if len(body) > max_bytes:
                                raise ResponseTooLarge(f"response over {max_bytes} bytes")
                    finally:
                        await response.aclose()
                    follow = _next_redirect(request, response, hops)
                    if follow is None:
                        break
                    request = follow
        except TimeoutError:
            raise TransportFailure("total timeout", reached=True, timeout=True) from None
        except httpx.HTTPError as exc:
            raise _translate(exc) from None
        return _buffered(response, bytes(body))


class SyncDriver:
    """Runs flows with an ``httpx.Client`` and a sync store (WSGI, any number of threads)."""

    __slots__ = ("_inflight", "_lock", "_spawner", "client", "metrics", "store", "store_label")

    def __init__(
        self, client: httpx.Client, store: Any = None, *, metrics: Any = None,
        store_label: str = "",
    ) -> None:  # fmt: skip
        self.client = client
        self.store = store
        self.metrics = metrics
        self.store_label = store_label
        self._inflight: dict[Hashable, _SyncCall] = {}
        self._lock = threading.Lock()
        self._spawner: SyncSpawner | None = None
        # a blocking socket cannot be cancelled: bound each socket operation instead (TR-03)
        for transport in (
            getattr(client, "_transport", None),
            *getattr(client, "_mounts", {}).values(),  # proxies from the environment
        ):
            _deadline.bound(transport)

    @property
    def spawner(self) -> SyncSpawner:
        """The follow-ups started with :class:`Spawn` (created on first use)."""
        with self._lock:
            if self._spawner is None:
                self._spawner = SyncSpawner(self)
            return self._spawner

    def close(self) -> None:
        """Stop the follow-ups (their waits end at once); the HTTP client stays open."""
        if self._spawner is not None:
            self._spawner.close()

    def run(self, flow: Flow[T]) -> T:
        """Drive ``flow`` to completion and return its value."""
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = flow.throw(error) if error is not None else flow.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value, error = None, None
            try:
                value = self._perform(effect)
            except Exception as exc:  # delivered into the flow, which decides
                error = exc

    def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, httpx.Request):
            return self._http(effect)
        if isinstance(effect, StoreOp):
            if self.metrics is None:
                return getattr(self.store, effect.name)(*effect.args, **(effect.kwargs or {}))
            started = time.perf_counter()
            failed = True
            try:
                value = getattr(self.store, effect.name)(*effect.args, **(effect.kwargs or {}))
                failed = False
                return value
            finally:
                _store_observed(self.metrics, self.store_label, effect.name, started, failed)
        if isinstance(effect, Shared):
            return self._shared(effect)
        if isinstance(effect, Hook):
            result = effect.function(*effect.args)
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if close is not None:
                    close()
                raise TypeError(
                    f"{getattr(effect.function, '__qualname__', effect.function)!r} is async; "
                    "under WSGI hooks must be plain functions"
                )
            return result
        if isinstance(effect, Spawn):
            return self.spawner.spawn(effect.name, effect.factory)
        spawner = self._spawner
        if spawner is None:
            time.sleep(effect.seconds)
        elif spawner.stopping.wait(effect.seconds):
            raise Cancelled("the driver is closed")
        return None

    def _shared(self, effect: Shared) -> Any:
        with self._lock:
            call = self._inflight.get(effect.key)
            leader = call is None
            if call is None:
                call = self._inflight[effect.key] = _SyncCall()
        if leader:
            try:
                call.value = self.run(effect.flow())
            except Exception as exc:
                call.error = exc
            finally:
                with self._lock:
                    del self._inflight[effect.key]
                call.done.set()
        else:
            if self.metrics is not None:
                _waiter(self.metrics, effect.key)
            call.done.wait()
        if call.error is not None:
            raise call.error
        return call.value

    def _http(self, request: httpx.Request) -> httpx.Response:
        max_bytes, total = _limits(request)
        deadline = time.monotonic() + total
        try:
            with _deadline.deadline(total):
                response, body = self._exchange(request, max_bytes, deadline)
        except httpx.HTTPError as exc:
            raise _translate(exc) from None
        return _buffered(response, body)

    def _exchange(
        self, request: httpx.Request, max_bytes: int, deadline: float
    ) -> tuple[httpx.Response, bytes]:
        for hops in range(_REDIRECTS + 1):
            response = self.client.send(request, stream=True)
            try:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise ResponseTooLarge(f"response over {max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise TransportFailure("total timeout", reached=True, timeout=True)
            finally:
                response.close()
            follow = _next_redirect(request, response, hops)
            if follow is None:
                break
            request = follow
        return response, bytes(body)


def _store_observed(metrics: Any, backend: str, op: str, started: float, failed: bool) -> None:
    if failed:
        metrics.incr("store_errors", target=backend, flow=op)
    metrics.observe("store", time.perf_counter() - started, target=backend, flow=op)


_WAITER_TARGET = {"authrelay.token": 1, "authrelay.agent": 1, "authrelay.connector-refresh": 2}


def _waiter(metrics: Any, key: Hashable) -> None:
    """Count a flow that waits on another's call; labels never carry a user or a URL."""
    kind = key[0] if isinstance(key, tuple) and key and isinstance(key[0], str) else "other"
    position = _WAITER_TARGET.get(kind)
    target = key[position] if position is not None and isinstance(key, tuple) else ""
    metrics.incr(
        "singleflight_waits",
        target=target if isinstance(target, str) else "",
        flow=kind.removeprefix("authrelay.") if kind.startswith("authrelay.") else "other",
    )


def _buffered(response: httpx.Response, body: bytes) -> httpx.Response:
    dropped = {"content-encoding", "content-length", "transfer-encoding"}
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in dropped]
    return httpx.Response(
        response.status_code, headers=headers, content=body, request=response.request
    )
