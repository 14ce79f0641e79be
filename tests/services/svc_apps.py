"""The same small app twice: under ASGI (Starlette + uvicorn) and WSGI (werkzeug, threaded)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from authrelay import AuthRelayMiddleware
from authrelay.relay import Relay
from authrelay.testing.servers import serve_asgi, serve_wsgi
from authrelay.wsgi import AuthRelayWSGIMiddleware


def _expect(principal: Any) -> dict[str, str]:
    sub = principal.claims.get("sub") if principal.kind == "bearer" else None
    return {"x-expect-sub": sub} if sub else {}


def _body(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def asgi_app(relay: Relay) -> Any:
    async def call(request: Request) -> JSONResponse:
        client = request.state.services[request.path_params["service"]]
        response = await client.get("/whoami", headers=_expect(request.user))
        return JSONResponse({"status": response.status_code, "body": _body(response)})

    async def header(request: Request) -> JSONResponse:
        client = request.state.services[request.path_params["service"]]
        value = await client.authorization_header()
        return JSONResponse({"scheme": value.split(" ")[0], "length": len(value)})

    async def plain(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def stream(request: Request) -> JSONResponse:
        async def chunks() -> Any:
            yield b"one-shot body"

        client = request.state.services[request.path_params["service"]]
        response = await client.post("/whoami", content=chunks(), headers=_expect(request.user))
        return JSONResponse({"status": response.status_code, "body": _body(response)})

    app = Starlette(
        routes=[
            Route("/call/{service}", call),
            Route("/header/{service}", header),
            Route("/plain", plain),
            Route("/stream/{service}", stream),
        ]
    )
    app.add_middleware(AuthRelayMiddleware, relay=relay)
    return app


def wsgi_app(relay: Relay) -> Any:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        services = environ["authrelay.services"]
        principal = environ["authrelay.principal"]
        if path.startswith("/call/"):
            response = services[path[6:]].get("/whoami", headers=_expect(principal))
            payload: Any = {"status": response.status_code, "body": _body(response)}
        elif path.startswith("/stream/"):
            body = iter([b"one-shot body"])  # a stream: cannot be sent twice
            response = services[path[8:]].post("/whoami", content=body, headers=_expect(principal))
            payload = {"status": response.status_code, "body": _body(response)}
        elif path.startswith("/header/"):
            value = services[path[8:]].authorization_header()
            payload = {"scheme": value.split(" ")[0], "length": len(value)}
        else:
            payload = {"ok": True}
        body = json.dumps(payload).encode()
        start_response("200 OK", [("content-type", "application/json")])
        return [body]

    return AuthRelayWSGIMiddleware(app, relay=relay)


@contextmanager
def serve(shell: str, relay: Relay) -> Iterator[str]:
    """Serve the app for ``relay`` under ``shell`` ("asgi" | "wsgi"); yield its URL."""
    if shell == "asgi":
        with serve_asgi(asgi_app(relay)) as url:
            yield url
    else:
        with serve_wsgi(wsgi_app(relay)) as url:
            yield url
