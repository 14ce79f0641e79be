"""Ways to reach the test provider: a synchronous in-process transport and a uvicorn protocol.

The sync transport runs the ASGI app on a private event loop thread, so ``httpx.Client``
code (the WSGI shell) can be tested in process without a socket. The uvicorn protocol
exposes the connection's transport to the app so a ``drop`` fault can close the socket
without any response, which is what a crashed or partitioned provider looks like.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx

from .._types import ASGIApp, Receive, Scope, Send
from .faults import TRANSPORT_KEY

__all__ = ["SyncASGITransport", "transport_binding_protocol"]


class SyncASGITransport(httpx.BaseTransport):
    """An ``httpx.BaseTransport`` serving an ASGI app synchronously, for ``httpx.Client``."""

    def __init__(self, app: ASGIApp) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="authrelay-idp-sync", daemon=True
        )
        self._thread.start()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` to the app and return the fully read response."""
        body = request.read()
        copy = httpx.Request(request.method, request.url, headers=request.headers, content=body)

        async def run() -> tuple[int, httpx.Headers, bytes]:
            response = await self._inner.handle_async_request(copy)
            content = await response.aread()
            return response.status_code, response.headers, content

        status, headers, content = asyncio.run_coroutine_threadsafe(run(), self._loop).result()
        return httpx.Response(status, headers=headers, content=content, request=request)

    def close(self) -> None:
        """Stop the private event loop."""
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def transport_binding_protocol() -> type[Any]:
    """A uvicorn h11 protocol class that puts the socket transport into the ASGI scope."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TransportBindingH11(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            inner = self.app

            async def app(scope: Scope, receive: Receive, send: Send) -> None:
                scope.setdefault("extensions", {})[TRANSPORT_KEY] = transport
                await inner(scope, receive, send)

            self.app = app

    return TransportBindingH11
