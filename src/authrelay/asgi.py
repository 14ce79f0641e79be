"""The ASGI shell: pure ASGI middleware, a plain class that never wraps the request.

Per request it extracts the view :mod:`authrelay.pipeline` decides on and maps the
decision: ``scope["user"]``, ``scope["auth"]`` and ``scope["state"]["services"]`` for the
app, the router's answer under ``routes.prefix`` (flows on the async driver), or the
error answer; it also renders authrelay errors the app lets propagate. ``lifespan``
passes through untouched; the relay's clients are closed when the server shuts down
(``lifespan.shutdown``) or on :meth:`aclose`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from ._types import ASGIApp, Message, Receive, Scope, Send
from .declare import check_app
from .errors import AuthRelayError
from .pipeline import (
    BODY_METHODS,
    MAX_BODY,
    Decision,
    Pass,
    Pipeline,
    Reject,
    RequestView,
    Resolve,
    Route,
)
from .relay import Relay
from .responses import Response
from .settings import Settings

__all__ = ["AuthRelayMiddleware"]

logger = logging.getLogger("authrelay.asgi")

_NO_STORE = (b"cache-control", b"no-store")
_PRIVATE = (b"cache-control", b"private")
_VARY_COOKIE = (b"vary", b"Cookie")
ErrorHandler = Callable[[Scope, AuthRelayError], Response | None]


class AuthRelayMiddleware:
    """Wraps any ASGI app: ``app.add_middleware(AuthRelayMiddleware, settings=settings)``.

    Pass ``relay=`` to share one :class:`~authrelay.relay.Relay` (and its caches) with
    other parts of the app; ``on_error(scope, error)`` may return a custom response.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings | None = None,
        relay: Relay | None = None,
        on_error: ErrorHandler | None = None,
    ) -> None:
        if relay is None:
            if settings is None:
                raise TypeError("AuthRelayMiddleware needs settings= or relay=")
            relay = Relay(settings)
        self.app = app
        self.relay = relay
        self.on_error = on_error
        self.pipeline = Pipeline(relay, asynchronous=True)
        self._prefix = relay.prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        pipeline = self.pipeline
        if pipeline.start_pending and kind != "lifespan":
            pipeline.start()
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":
                receive = self._watch_lifespan(receive, scope.get("app", self.app))
            await self.app(scope, receive, send)
            return
        authorization: list[str] | None = None
        cookie: str | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is None:
                    authorization = [value.decode("latin-1")]
                else:
                    authorization.append(value.decode("latin-1"))
            elif name == b"cookie":
                text = value.decode("latin-1")
                cookie = text if cookie is None else f"{cookie}; {text}"
        path: str = scope["path"]
        if (
            authorization is None
            and cookie is None
            and (kind != "http" or not path.startswith(self._prefix))
        ):
            # The common case: anonymous, not a route; the pipeline's answer, precomputed.
            decision: Decision = pipeline.anonymous
        else:
            view = RequestView(
                scope["method"] if kind == "http" else "GET",
                path if kind == "http" else "",  # a websocket is never a route
                scope.get("query_string", b""),
                [] if authorization is None else authorization,
                cookie,
            )
            decision = pipeline.begin(view)
            if type(decision) is Resolve:
                decision = await self.relay.async_driver.run(decision.flow)
            if type(decision) is Route:
                await self._route(scope, receive, send, decision)
                return
            if type(decision) is Reject:
                await self._reject(scope, send, decision.error)
                return
        assert type(decision) is Pass
        state = scope.get("state")
        if state is None:
            scope["state"] = {"services": decision.services}
        else:
            state["services"] = decision.services
        scope["user"] = decision.principal
        scope["auth"] = decision.credentials
        scope["authrelay"] = self.relay
        if decision.private:
            send = _private(send, decision.set_cookie)
        try:
            await self.app(scope, receive, send)
        except AuthRelayError as exc:
            if kind != "http":
                raise
            try:
                await self._reject(scope, send, exc)
            except Exception:
                # The response had started: the server refuses a second start.
                raise exc from None

    async def _reject(self, scope: Scope, send: Send, error: AuthRelayError) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": error.error})
            return
        response = self.on_error(scope, error) if self.on_error is not None else None
        if response is None:
            response = self.pipeline.error(error, _header(scope, b"accept"), scope["path"])
        await _send_response(send, response)

    async def _route(self, scope: Scope, receive: Receive, send: Send, route: Route) -> None:
        headers = scope_headers(scope)
        body = b""
        if scope["method"] in BODY_METHODS:
            body_or_none = await _read_body(receive)
            if body_or_none is None:
                await _send_response(send, self.pipeline.too_large())
                return
            body = body_or_none
        client = scope.get("client")
        flow = route.flow(
            headers,
            body,
            scheme=scope.get("scheme", "http"),
            client_host=client[0] if client else None,
        )
        await _send_response(send, await self.relay.async_driver.run(flow))

    def _watch_lifespan(self, receive: Receive, app: object) -> Receive:
        async def receive_wrapper() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # The services routes declare (``@uses``, ``Service()``): a typo stops the app.
                check_app(app, self.relay.services.names)
                await self.relay.astartup()
                self.pipeline.start()
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.relay.aclose()
                except Exception:  # shutdown must go on
                    logger.exception("relay_close_failed")
            return message

        return receive_wrapper

    async def aclose(self) -> None:
        """Close the relay's pooled clients and stores."""
        await self.relay.aclose()


def scope_headers(scope: Scope) -> dict[str, str]:
    """Lower-case header names to their first value (split ``Cookie`` values joined)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name == "cookie" and name in headers:  # HTTP/2 may split cookies (RFC 9113 §8.2.3)
            headers[name] = f"{headers[name]}; {value}"
        else:
            headers.setdefault(name, value)
    return headers


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            text: str = value.decode("latin-1")
            return text
    return None


def _private(send: Send, set_cookie: str | None) -> Send:
    """``send`` for an answer that depended on the session cookie (SE-08)."""
    cookie = None if set_cookie is None else set_cookie.encode("latin-1")

    async def send_private(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = _private_headers(message.get("headers", ()), cookie)
        await send(message)

    return send_private


def _private_headers(
    headers: Iterable[tuple[bytes, bytes]], cookie: bytes | None
) -> list[tuple[bytes, bytes]]:
    """:func:`authrelay.responses.private_headers` on ASGI byte pairs."""
    out: list[tuple[bytes, bytes]] = []
    vary = cache = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"vary" and not vary:
            vary = True
            items = [item.strip().lower() for item in value.split(b",")]
            if b"cookie" not in items and b"*" not in items:
                value = value + b", Cookie" if value.strip() else b"Cookie"
        elif lower == b"cache-control":
            cache = True
        out.append((name, value))
    if cookie is not None:
        out.append((b"set-cookie", cookie))
        out.append(_NO_STORE)
    elif not cache:
        out.append(_PRIVATE)
    if not vary:
        out.append(_VARY_COOKIE)
    return out


async def _read_body(receive: Callable[[], Awaitable[Message]]) -> bytes | None:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return bytes(body)
        body += message.get("body", b"")
        if len(body) > MAX_BODY:
            return None
        if not message.get("more_body", False):
            return bytes(body)


async def _send_response(send: Send, response: Response) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": response.raw_headers(),
        }
    )
    await send({"type": "http.response.body", "body": response.body})
