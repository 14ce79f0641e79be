"""Servers in their own processes: ``python -m benchmarks.serve KIND --port P [...]``.

A server in a thread of the measuring process would fight it for the GIL and turn every
loopback round trip into a wait for the interpreter's switch interval; in its own
process it only competes for a core, as in production. KIND is ``downstream`` or one of
the app variants measured under uvicorn (see :data:`KINDS`), or ``sidecar`` (authrelay's
own sidecar mode, the peer of target T12). When ready the process
prints one JSON line (``{"ready": true, "cookie": ...}``) on stdout.

Defends against orphaned servers: :func:`spawn` is a context manager that terminates
its process (by its own handle) on exit, and each server exits when its stdin closes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["KINDS", "spawn"]

KINDS = (
    "token",
    "downstream",
    "bare",
    "anonymous",
    "session",
    "bearer",
    "header",
    "authlib_peer",
    "sidecar",
)


def _build(
    kind: str, issuer: str, downstream: str, delay: float = 0.0
) -> tuple[Any, dict[str, Any]]:
    from authrelay import AuthRelayMiddleware
    from authrelay.relay import Relay

    from .apps import authlib_peer, bare_app, relay_settings, session_cookie
    from .idp import BenchIdP
    from .services import downstream_app, service_routes, service_settings

    if kind == "token":
        return BenchIdP(issuer=issuer, token_delay=delay).app, {}
    if kind == "downstream":
        return downstream_app(), {}
    if kind == "bare":
        return bare_app(service_routes()), {}
    if kind == "authlib_peer":
        return authlib_peer(BenchIdP(issuer=issuer)), {}
    if kind == "sidecar":
        from authrelay.sidecar import create_sidecar_app

        settings = relay_settings(BenchIdP(issuer=issuer), service_settings(downstream))
        return create_sidecar_app(relay=Relay(settings)), {}
    idp = BenchIdP(issuer=issuer)
    services = service_settings(downstream) if downstream else None
    relay = Relay(relay_settings(idp, services))
    info = {"cookie": session_cookie(relay)} if kind == "session" else {}
    return AuthRelayMiddleware(bare_app(service_routes()), relay=relay), info


def main(argv: list[str] | None = None) -> None:
    """Serve one variant under uvicorn (1 worker) until stdin closes."""
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--issuer", default="")
    parser.add_argument("--downstream", default="")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--http", default="h11", choices=("h11", "httptools"))
    args = parser.parse_args(argv)
    app, info = _build(args.kind, args.issuer, args.downstream, args.delay)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="error",
        access_log=False,
        http=args.http,
        loop="asyncio",
    )
    server = uvicorn.Server(config)

    def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            threading.Event().wait(0.01)
        print(json.dumps({"ready": True, **info}), flush=True)
        sys.stdin.read()  # the parent closes our stdin to stop us
        server.should_exit = True

    threading.Thread(target=announce, daemon=True).start()
    server.run()


@contextlib.contextmanager
def spawn(
    kind: str,
    *,
    issuer: str = "",
    downstream: str = "",
    delay: float = 0.0,
    http: str = "h11",
    timeout: float = 30.0,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Start ``kind`` on a free loopback port; yield ``(base_url, info)``; stop it on exit."""
    from authrelay.testing.servers import free_port

    port = free_port()
    command = [sys.executable, "-m", "benchmarks.serve", kind, "--port", str(port)]
    if issuer:
        command += ["--issuer", issuer]
    if downstream:
        command += ["--downstream", downstream]
    if delay:
        command += ["--delay", str(delay)]
    if http != "h11":
        command += ["--http", http]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=_root()
    )
    try:
        assert process.stdout is not None
        line = _readline(process, timeout)
        if not line:
            raise RuntimeError(f"benchmark server {kind!r} did not start")
        info = json.loads(line)
        yield f"http://127.0.0.1:{port}", info
    finally:
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def _readline(process: subprocess.Popen[str], timeout: float) -> str:
    result: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else ""


def _root() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parent.parent)


if __name__ == "__main__":
    main()
