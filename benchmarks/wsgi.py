"""Scenario 7: WSGI. A bare WSGI callable and a Flask app, with and without authrelay.

Direct calls (an environ, a ``start_response``, the body iterated and closed), the
variants interleaved as everywhere else. The floor of target T03 is the bare callable;
the Flask rows show what the same middleware costs in front of a real framework, down to
scenario 5 (a Flask route calling ``services()["x"].authorization_header()``, warm),
each against bare Flask.

Defends against timing a response that was never produced: every variant is called
once first and must answer 200 with the expected subject.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

from authrelay.relay import Relay
from authrelay.wsgi import AuthRelayWSGIMiddleware

from .apps import relay_settings, session_cookie
from .idp import BenchIdP
from .timing import interleave_sync, ratio, summary

__all__ = ["run_phase"]

_BODY = json.dumps({"ok": True}).encode()
_HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(_BODY)))]


def bare_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The floor: a WSGI callable answering a small JSON body."""
    if environ["PATH_INFO"] == "/whoami":
        principal = environ.get("authrelay.principal")
        body = json.dumps({"subject": getattr(principal, "subject", None)}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    start_response("200 OK", _HEADERS)
    return [_BODY]


def flask_app() -> Any:
    """A Flask app with the same two routes."""
    from flask import Flask, request

    app = Flask("bench")

    @app.get("/open")
    def open_route() -> Any:
        return {"ok": True}

    @app.get("/whoami")
    def whoami() -> Any:
        principal = request.environ.get("authrelay.principal")
        return {"subject": getattr(principal, "subject", None)}

    return app


def environ_for(path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A WSGI environ as werkzeug's server builds it."""
    import io

    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    return None


def wsgi_call(app: Any, environ: dict[str, Any]) -> Callable[[], None]:
    """A zero-argument callable running one request through ``app``."""

    def call() -> None:
        result = app(dict(environ), _start_response)
        for _ in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()

    return call


def wsgi_get(app: Any, environ: dict[str, Any]) -> tuple[str, Any]:
    """One request, returning ``(status line, decoded JSON)`` (checks, not timing)."""
    seen: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen.append(status)

    result = app(dict(environ), start_response)
    body = b"".join(result)
    close = getattr(result, "close", None)
    if close is not None:
        close()
    return seen[0], json.loads(body)


def _check(name: str, app: Any, environ: dict[str, Any], subject: str | None) -> None:
    status, body = wsgi_get(app, {**environ, "PATH_INFO": "/whoami"})
    if not status.startswith("200") or body.get("subject") != subject:
        raise RuntimeError(f"{name}: expected 200 for {subject!r}, got {status} {body!r}")


def run_phase(idp: BenchIdP, config: Any, figures: dict[str, Any]) -> None:
    """Time the WSGI variants; store them under ``figures["wsgi"]``."""
    relay = Relay(relay_settings(idp))
    try:
        wrapped = AuthRelayWSGIMiddleware(bare_wsgi, relay=relay)
        flask = flask_app()
        flask_wrapped = AuthRelayWSGIMiddleware(flask_app().wsgi_app, relay=relay)
        cookie = session_cookie(relay)
        token = idp.mint("RS256")
        plain = environ_for("/open")
        with_cookie = environ_for("/open", {"Cookie": cookie})
        with_bearer = environ_for("/open", {"Authorization": f"Bearer {token}"})
        _check("bare wsgi", bare_wsgi, plain, None)
        _check("authrelay wsgi", wrapped, plain, None)
        _check("flask + authrelay", flask_wrapped, plain, None)
        _check("flask + authrelay session", flask_wrapped, with_cookie, "alice")
        _check("flask + authrelay bearer", flask_wrapped, with_bearer, "alice")
        variants = {
            "bare": wsgi_call(bare_wsgi, plain),
            "anonymous": wsgi_call(wrapped, plain),
            "flask": wsgi_call(flask.wsgi_app, plain),
            "flask_anonymous": wsgi_call(flask_wrapped, plain),
            "flask_session": wsgi_call(flask_wrapped, with_cookie),
            "flask_bearer": wsgi_call(flask_wrapped, with_bearer),
        }
        with _header_variant(idp) as extra:
            variants.update(extra)
            series = interleave_sync(variants, rounds=config.rounds, inner=config.wsgi_inner)
    finally:
        relay.close()
    section = figures["wsgi"]
    section["calls"] = {name: summary(s.values) for name, s in series.items()}
    section["vs_floor"] = {
        name: ratio(s, series["flask"] if name.startswith("flask_") else series["bare"])
        for name, s in series.items()
        if name not in ("bare",)
    }
    figures["ratios"]["wsgi_anonymous_vs_bare"] = ratio(series["anonymous"], series["bare"])


def _header_variant(idp: BenchIdP) -> AbstractContextManager[dict[str, Callable[[], None]]]:
    """Scenario 5 under WSGI: Flask route calling ``authorization_header()`` (warm)."""
    from . import services

    return services.wsgi_variants(idp)
