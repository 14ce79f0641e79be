"""WSGI under real servers: gunicorn (sync worker) and werkzeug (threaded), 1 process each.

The direct-call floor of the WSGI rows is a callable costing well under a microsecond,
so a ratio to it says little about a deployment. Here the bare WSGI callable, authrelay
around it, bare Flask and Flask with authrelay each run in their own server process and
are loaded by the same raw HTTP/1.1 loop as the uvicorn rows (neither server keeps a
connection alive, so each request opens one). Variants are shuffled in every round;
ratios are taken within a round.

Defends against counting failures as throughput: every answer's status is parsed and a
non-200 answer fails the phase; a server that does not accept connections within its
start-up time fails it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from .idp import BenchIdP
from .server import load
from .timing import Series, ratio, summary

__all__ = ["build", "run_phase"]

KINDS = ("wsgi_bare", "wsgi_authrelay", "flask", "flask_authrelay")
SERVERS = ("gunicorn", "werkzeug")


def build() -> Any:
    """The WSGI app named by ``BENCH_KIND`` (gunicorn calls this in its worker)."""
    from authrelay.relay import Relay
    from authrelay.wsgi import AuthRelayWSGIMiddleware

    from .apps import relay_settings
    from .wsgi import bare_wsgi, flask_app

    kind = os.environ["BENCH_KIND"]
    app: Any = flask_app().wsgi_app if kind.startswith("flask") else bare_wsgi
    if kind.endswith("authrelay"):
        relay = Relay(relay_settings(BenchIdP(issuer=os.environ["BENCH_ISSUER"])))
        app = AuthRelayWSGIMiddleware(app, relay=relay)
    return app


def _wait_for(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"WSGI server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError("WSGI server did not start")


@contextlib.contextmanager
def _serve(server: str, kind: str, issuer: str) -> Iterator[str]:
    from authrelay.testing.servers import free_port

    from .serve import _root

    port = free_port()
    env = {**os.environ, "BENCH_KIND": kind, "BENCH_ISSUER": issuer}
    if server == "gunicorn":
        command = [
            sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "sync",
            "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
            "benchmarks.wsgi_servers:build()",
        ]  # fmt: skip
    else:
        command = [sys.executable, "-m", "benchmarks.wsgi_servers", str(port)]
    process = subprocess.Popen(command, cwd=_root(), env=env, stdin=subprocess.DEVNULL)
    try:
        _wait_for(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def _measure(targets: dict[str, str], config: Any) -> dict[str, Series]:
    seconds = max(0.2, config.server_seconds / 2)
    for name, url in targets.items():
        _, statuses = await load(url, "/open", {}, seconds=0.3, concurrency=2)
        if statuses:
            raise RuntimeError(f"{name}: non-200 answers while warming: {statuses}")
    rng = random.Random(13)
    names = list(targets)
    values: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(config.server_rounds):
        rng.shuffle(names)
        for name in names:
            rps, statuses = await load(
                targets[name], "/open", {}, seconds=seconds, concurrency=config.server_concurrency
            )
            if statuses:
                raise RuntimeError(f"{name}: non-200 answers under load: {statuses}")
            values[name].append(rps)
    return {name: Series(name, tuple(v)) for name, v in values.items()}


def run_phase(idp: BenchIdP, config: Any, figures: dict[str, Any]) -> None:
    """Requests/s of the four WSGI apps under both servers into ``figures["wsgi_servers"]``."""
    with contextlib.ExitStack() as stack:
        targets = {
            f"{kind}@{server}": stack.enter_context(_serve(server, kind, idp.issuer))
            for server in SERVERS
            for kind in KINDS
        }
        series = asyncio.run(_measure(targets, config))
    floors = {"wsgi_authrelay": "wsgi_bare", "flask_authrelay": "flask"}
    vs_floor = {}
    for name, s in series.items():
        kind, _, server = name.partition("@")
        if kind in floors:
            vs_floor[name] = ratio(s, series[f"{floors[kind]}@{server}"])
    figures["wsgi_servers"] = {
        "rps": {name: summary(s.values) for name, s in series.items()},
        "vs_floor": vs_floor,
        "seconds_per_sample": max(0.2, config.server_seconds / 2),
    }


def main() -> None:
    """``python -m benchmarks.wsgi_servers PORT``: werkzeug's threaded server, 1 process."""
    import logging

    from werkzeug.serving import run_simple

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log: it costs per request
    run_simple("127.0.0.1", int(sys.argv[1]), build(), threaded=True)


if __name__ == "__main__":
    main()
