"""Fault injection and request counters: the outermost ASGI layer of the test provider.

Clients must survive a provider that is slow, down, rate limited, answers garbage or hangs
up; these switches let tests produce each of those on demand, deterministically, and the
counters let a test prove how many requests a client really made (for example exactly one
token request under 500 concurrent callers). This layer reads only what it needs to
classify a request (path, ``grant_type``, client id) and never records token values.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import threading
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit

import httpx

from .._types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DROPPED", "ENDPOINTS", "Counters", "Fault", "FaultLayer", "Faults"]

ENDPOINTS = {
    "/.well-known/openid-configuration": "discovery",
    "/.well-known/oauth-authorization-server": "discovery",
    "/jwks": "jwks",
    "/authorize": "authorize",
    "/authorize/login": "login",
    "/token": "token",
    "/par": "par",
    "/userinfo": "userinfo",
    "/introspect": "introspect",
    "/revoke": "revoke",
    "/end-session": "end-session",
}
DROPPED = 0
"""The status recorded for a request whose connection was dropped by a fault."""
TRANSPORT_KEY = "authrelay.transport"
_MAX_BODY = 1 << 20


@dataclass
class Fault:
    """One armed fault. ``remaining=None`` means until cleared."""

    endpoint: str
    status: int | None
    retry_after: int | None
    delay: float
    malformed: bool
    drop: bool
    remaining: int | None
    grant_type: str | None
    error: str | None

    @property
    def only_delays(self) -> bool:
        """True when the fault just slows the real answer down."""
        return not (self.malformed or self.drop or self.error) and self.status is None


class Faults:
    """Armed faults, consumed in the order they were added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        endpoint: str = "token",
        *,
        status: int | None = None,
        retry_after: int | None = None,
        delay: float = 0.0,
        malformed: bool = False,
        drop: bool = False,
        count: int | None = 1,
        grant_type: str | None = None,
        error: str | None = None,
    ) -> Fault:
        """Arm a fault for the next ``count`` matching requests (None: until cleared).

        ``status`` defaults to 503 (``temporarily_unavailable``), or to 400 (401 for
        ``invalid_client``) when ``error`` is given. A fault with only ``delay`` set serves
        the real answer after the delay. ``malformed`` answers 200 with a non-JSON body;
        ``drop`` closes the connection without any response.
        """
        if endpoint not in set(ENDPOINTS.values()):
            raise ValueError(
                f"unknown endpoint {endpoint!r}; one of {sorted(set(ENDPOINTS.values()))}"
            )
        fault = Fault(
            endpoint, status, retry_after, delay, malformed, drop, count, grant_type, error
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._faults.clear()

    def take(self, endpoint: str, grant_type: str | None) -> Fault | None:
        """The first armed fault matching this request, consuming one use of it."""
        with self._lock:
            for fault in self._faults:
                if fault.endpoint != endpoint:
                    continue
                if fault.grant_type is not None and fault.grant_type != grant_type:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None


class Counters:
    """Requests seen, by (endpoint, grant_type, client_id, status); faulted ones included."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str | None, str | None, int]] = Counter()

    def record(
        self, endpoint: str, grant_type: str | None, client_id: str | None, status: int
    ) -> None:
        """Count one finished request."""
        with self._lock:
            self._counts[(endpoint, grant_type, client_id, status)] += 1

    def count(
        self,
        endpoint: str | None = None,
        grant_type: str | None = None,
        client_id: str | None = None,
        status: int | None = None,
    ) -> int:
        """How many requests matched; a ``None`` argument matches anything."""
        with self._lock:
            return sum(
                n
                for (e, g, c, s), n in self._counts.items()
                if (endpoint is None or e == endpoint)
                and (grant_type is None or g == grant_type)
                and (client_id is None or c == client_id)
                and (status is None or s == status)
            )

    def reset(self) -> None:
        """Forget every count."""
        with self._lock:
            self._counts.clear()


def _client_id(headers: dict[str, str], params: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return unquote_plus(decoded.partition(":")[0])
    if "client_id" in params:
        return params["client_id"]
    assertion = params.get("client_assertion", "")
    if assertion.count(".") == 2:
        try:
            segment = assertion.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
            return str(claims.get("sub")) if isinstance(claims, dict) else None
        except (binascii.Error, ValueError):
            return None
    return None


def _json_response(
    status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]]
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    data = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(data)).encode()),
        *extra,
    ]
    return status, headers, data


def _fault_response(fault: Fault) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    extra: list[tuple[bytes, bytes]] = []
    if fault.retry_after is not None:
        extra.append((b"retry-after", str(fault.retry_after).encode()))
    if fault.malformed:
        body = b"<html><body>upstream gateway said no</body></html>"
        headers = [(b"content-type", b"text/html"), (b"content-length", str(len(body)).encode())]
        return fault.status or 200, headers + extra, body
    if fault.error:
        status = fault.status or (401 if fault.error == "invalid_client" else 400)
        if status == 401:
            extra.append((b"www-authenticate", b'Basic realm="authrelay-test-idp"'))
        body_json = {"error": fault.error, "error_description": "injected fault"}
        return _json_response(status, body_json, extra)
    status = fault.status or 503
    code = "temporarily_unavailable" if status == 503 else "server_error"
    return _json_response(status, {"error": code, "error_description": "injected fault"}, extra)


class FaultLayer:
    """Pure ASGI wrapper: strips the issuer path, counts requests, applies faults."""

    def __init__(
        self, app: ASGIApp, *, faults: Faults, counters: Counters, issuer_path: Callable[[], str]
    ) -> None:
        self.app = app
        self.faults = faults
        self.counters = counters
        self.issuer_path = issuer_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        prefix = self.issuer_path()
        path: str = scope["path"]
        if prefix:
            if not path.startswith(prefix + "/"):
                await _send(send, *_json_response(404, {"error": "not_found"}, []))
                return
            scope = dict(
                scope, path=path[len(prefix) :], root_path=scope.get("root_path", "") + prefix
            )
        endpoint = ENDPOINTS.get(scope["path"], "other")
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > _MAX_BODY:
                await _send(send, *_json_response(413, {"error": "invalid_request"}, []))
                return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl(body.decode("utf-8", "replace")))
        grant_type = params.get("grant_type") if endpoint == "token" else None
        client_id = _client_id(headers, params)
        recorded = False

        def record(status: int) -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                self.counters.record(endpoint, grant_type, client_id, status)

        async def replay() -> Message:
            nonlocal body
            chunk, body = body, b""
            return {"type": "http.request", "body": chunk, "more_body": False}

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Count before the client can see the answer, so tests never race the count.
                record(int(message["status"]))
            await send(message)

        fault = self.faults.take(endpoint, grant_type)
        try:
            if fault is not None and fault.delay:
                await asyncio.sleep(fault.delay)
            if fault is None or fault.only_delays:
                await self.app(scope, replay, observe)
            elif fault.drop:
                record(DROPPED)
                await _drop(scope)
            else:
                await _send(observe, *_fault_response(fault))
        finally:
            record(DROPPED)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _drop(scope: Scope) -> None:
    transport = scope.get("extensions", {}).get(TRANSPORT_KEY)
    if transport is None:
        # In process (httpx.ASGITransport) the app's exception reaches the client as is.
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
    transport.close()
    # Let uvicorn notice the lost connection so it does not try to answer with a 500.
    for _ in range(3):
        await asyncio.sleep(0)


def issuer_path_of(issuer: str) -> str:
    """The path part of an issuer URL without a trailing slash."""
    return urlsplit(issuer).path.rstrip("/")
