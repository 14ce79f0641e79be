"""Issue #6 figures: several uvicorn workers sharing Redis, and Redis round trips per request.

The round-trip count and the 4-worker load are repeated on a throwaway Redis Cluster
(3 masters) and on Redis behind Sentinel, so the topologies compare in one run.

- Throughput: the scenario-5 route (``/header``: a bearer caller, the route awaits
  ``services["x"].authorization_header()``) served by uvicorn with 1, 2 and 4 workers,
  every worker's relay on ``store.url = redis://127.0.0.1:6379/0`` under one random
  ``key_prefix``; the three servers run side by side and are loaded in shuffled rounds
  (the raw keep-alive load loop of :mod:`.server`). On a 2-core machine the load
  generator takes a core of its own, so more workers than free cores cannot scale.
- Round trips: a relay in this process on the same Redis, every Redis connection's
  ``send_packed_command`` (sync and asyncio redis-py) counted while requests run. One
  send is one round trip (a pipeline is packed into one send); the first command of
  each send is recorded by name. Connection set-up (``CLIENT SETINFO``, ``HELLO``,
  ``SELECT``, ``AUTH``) and the invalidation listener's own traffic (``SUBSCRIBE``,
  health-check ``PING``) are counted apart: they happen per connection, not per request.
  Three paths: warm (this process's cache answers: must be 0), cold in this process but
  the token already in Redis (what a fresh worker pays), and cold everywhere (the token
  endpoint is called).

Defends against figures from a broken setup: every server must answer 200 from the
route before and during the load, the warm-up must leave exactly one token in Redis for
the shared user (one token-endpoint call for all seven workers), and every key under
the random prefix is deleted afterwards, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx

from .apps import asgi_get, bare_app, make_scope, relay_settings
from .idp import BenchIdP
from .services import service_routes, service_settings
from .timing import Series, ratio, summary

__all__ = ["WORKER_COUNTS", "count_round_trips", "run_phase", "worker_app"]

REDIS_URL = "redis://127.0.0.1:6379/0"
WORKER_COUNTS = (1, 2, 4)
_SETUP = frozenset({"CLIENT", "HELLO", "SELECT", "AUTH", "SUBSCRIBE", "PSUBSCRIBE", "PING"})
_NAME = re.compile(rb"^\*\d+\r\n\$\d+\r\n([^\r]+)")
_UNUSED = "http://127.0.0.1:9"  # only headers are fetched: the service is never called


def _settings(issuer: str, prefix: str, url: str = REDIS_URL) -> Any:
    store = {"url": url, "key_prefix": prefix}
    return relay_settings(BenchIdP(issuer=issuer), service_settings(_UNUSED), store)


def worker_app() -> Any:
    """The app each uvicorn worker builds (``--factory``): authrelay on Redis, ``/header``."""
    from authrelay import AuthRelayMiddleware
    from authrelay.relay import Relay

    relay = Relay(
        _settings(
            os.environ["BENCH_ISSUER"],
            os.environ["BENCH_KEY_PREFIX"],
            os.environ.get("BENCH_STORE_URL", REDIS_URL),
        )
    )
    return AuthRelayMiddleware(bare_app(service_routes()), relay=relay)


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.workers --workers N --port P``: uvicorn's supervisor, N workers.

    The same as ``uvicorn --factory --workers N`` except for the listening socket, made
    here with ``IPPROTO_TCP``: uvicorn's own ``bind_socket`` leaves ``proto`` at 0, so
    asyncio does not set ``TCP_NODELAY`` on the connections workers accept, and every
    small response written in two parts waits for the client's delayed ACK (about
    40 ms on Linux loopback, which caps a keep-alive connection near 25 requests/s).
    """
    import argparse
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    config = uvicorn.Config(
        "benchmarks.workers:worker_app", factory=True, host="127.0.0.1", port=args.port,
        workers=args.workers, log_level="error", access_log=False,
    )  # fmt: skip
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(config.backlog)
    sock.set_inheritable(True)
    if args.workers == 1:
        uvicorn.Server(config).run(sockets=[sock])
    else:
        Multiprocess(config, sockets=[sock]).run()


@contextlib.contextmanager
def _serve(
    workers: int, issuer: str, prefix: str, url: str = REDIS_URL, timeout: float = 60.0
) -> Iterator[str]:
    """uvicorn with ``workers`` workers in its own process group; yield its base URL."""
    from authrelay.testing.servers import free_port

    from .serve import _root

    port = free_port()
    command = [
        sys.executable, "-m", "benchmarks.workers", "--workers", str(workers),
        "--port", str(port),
    ]  # fmt: skip
    env = {
        **os.environ,
        "BENCH_ISSUER": issuer,
        "BENCH_KEY_PREFIX": prefix,
        "BENCH_STORE_URL": url,
    }
    process = subprocess.Popen(command, cwd=_root(), env=env, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"uvicorn with {workers} workers exited ({process.returncode})")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/open", timeout=1.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn with {workers} workers did not start")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()  # uvicorn's supervisor stops its workers on SIGTERM
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def count_round_trips() -> Iterator[list[str]]:
    """Record the first command name of every send on any redis-py connection."""
    import redis.asyncio.connection as async_connection
    import redis.connection as sync_connection

    sent: list[str] = []

    def name(command: Any) -> str:
        head = command if isinstance(command, bytes | str) else b"".join(list(command)[:2])
        raw = head.encode() if isinstance(head, str) else head
        match = _NAME.match(raw[:200])
        return match.group(1).decode(errors="replace").upper() if match else "?"

    sync_cls, async_cls = sync_connection.AbstractConnection, async_connection.AbstractConnection
    sync_send: Any = sync_cls.send_packed_command
    async_send: Any = async_cls.send_packed_command

    def sync_counting(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(name(command))
        return sync_send(self, command, *args, **kwargs)

    async def async_counting(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(name(command))
        return await async_send(self, command, *args, **kwargs)

    sync_cls.send_packed_command = sync_counting  # type: ignore[method-assign]
    async_cls.send_packed_command = async_counting  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        sync_cls.send_packed_command = sync_send  # type: ignore[method-assign]
        async_cls.send_packed_command = async_send  # type: ignore[method-assign]


def _split(sent: list[str]) -> tuple[int, dict[str, int]]:
    """``(round trips of store operations, every command by name)``."""
    by_name: dict[str, int] = {}
    for command in sent:
        by_name[command] = by_name.get(command, 0) + 1
    return sum(1 for command in sent if command not in _SETUP), by_name


async def _round_trips(
    idp: BenchIdP, prefix: str, users: int, warm: int, url: str = REDIS_URL
) -> dict[str, Any]:
    from authrelay import AuthRelayMiddleware
    from authrelay.relay import Relay

    first = Relay(_settings(idp.issuer, prefix, url))
    second = Relay(_settings(idp.issuer, prefix, url))
    apps = [AuthRelayMiddleware(bare_app(service_routes()), relay=r) for r in (first, second)]

    async def get(app: Any, path: str, token: str) -> None:
        status, body = await asgi_get(app, make_scope(path, [(b"authorization", token.encode())]))
        if status != 200:
            raise RuntimeError(f"{path} answered {status} {body!r}")

    paths: dict[str, list[float]] = {"cold": [], "warm": [], "worker_cold": []}
    names: dict[str, dict[str, int]] = {}
    token_calls: dict[str, int] = {"cold": 0, "warm": 0, "worker_cold": 0}
    try:
        for i in range(users):
            token = "Bearer " + idp.mint("RS256", sub=f"rt-{prefix}-{i}")
            for app in apps:  # the caller is verified first: only the service is cold
                await get(app, "/open", token)
            steps = [("cold", apps[0], 1), ("warm", apps[0], warm), ("worker_cold", apps[1], 1)]
            for path, app, count in steps:
                before = idp.token_calls
                with count_round_trips() as sent:
                    for _ in range(count):
                        await get(app, "/header", token)
                trips, by_name = _split(sent)
                paths[path].append(trips / count)
                token_calls[path] += idp.token_calls - before
                for command, n in by_name.items():
                    names.setdefault(path, {})[command] = names.get(path, {}).get(command, 0) + n
    finally:
        for relay in (first, second):
            await relay.aclose()
            relay.close()
    return {
        "users": users,
        "warm_requests_per_user": warm,
        "per_request": {
            path: {"median": sorted(v)[len(v) // 2], "min": min(v), "max": max(v)}
            for path, v in paths.items()
        },
        "commands": names,
        "token_calls": token_calls,
        "method": "counting wrapper on redis-py send_packed_command in the benchmark process",
    }


async def _throughput(
    urls: dict[str, str], token: str, config: Any
) -> tuple[dict[str, Series], dict[str, int]]:
    from .server import load

    headers = {"Authorization": f"Bearer {token}"}
    warm_statuses: dict[str, int] = {}
    for workers, url in urls.items():  # every worker takes its token into its own cache
        count = int(workers.split()[0])
        _, statuses = await load(url, "/header", headers, seconds=0.5, concurrency=2 * count)
        if statuses:
            raise RuntimeError(f"{workers} workers: non-200 answers while warming: {statuses}")
        warm_statuses[workers] = 0
    rng = random.Random(13)
    names = list(urls)
    values: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(config.server_rounds):
        rng.shuffle(names)
        for workers in names:
            rps, statuses = await load(
                urls[workers],
                "/header",
                headers,
                seconds=config.server_seconds,
                concurrency=config.server_concurrency,
            )
            if statuses:
                raise RuntimeError(f"{workers} workers: non-200 answers under load: {statuses}")
            values[workers].append(rps)
    return {n: Series(n, tuple(v)) for n, v in values.items()}, warm_statuses


def _redis_ready() -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1.0, socket_timeout=1.0)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return f"no Redis at {REDIS_URL} ({type(exc).__name__})"
    return None


def _clean(prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


@contextlib.contextmanager
def _topologies() -> Iterator[dict[str, str]]:
    """Throwaway Redis Cluster (3 masters) and Sentinel deployments: ``{name: store url}``."""
    from authrelay.testing.redis_servers import RedisClusterGroup, RedisSentinelGroup

    with contextlib.ExitStack() as stack:
        urls: dict[str, str] = {}
        for name, deployment in (
            ("cluster", RedisClusterGroup(masters=3)),
            ("sentinel", RedisSentinelGroup(replicas=1)),
        ):
            try:
                stack.enter_context(deployment)
            except (RuntimeError, OSError):
                continue  # no redis-server binary: the single-server figures stand alone
            urls[name] = deployment.url
        yield urls


def run_phase(idp: BenchIdP, config: Any, figures: dict[str, Any]) -> None:
    """Requests/s with 1, 2, 4 workers on Redis, and Redis round trips per request.

    It also serves 4 workers on a Redis Cluster and on Redis behind Sentinel (throwaway
    loopback deployments) and counts their round trips per request.
    """
    reason = _redis_ready()
    if reason is not None:
        figures["skipped"]["redis"] = reason
        return
    prefix = f"authrelay-bench-{secrets.token_hex(6)}:"
    section: dict[str, Any] = {"store": REDIS_URL, "key_prefix": "authrelay-bench-<random>:"}
    try:
        users = 2 if config.quick else 5
        section["round_trips"] = asyncio.run(_round_trips(idp, prefix, users, config.inner))
        token = idp.mint("RS256", sub="workers")
        with contextlib.ExitStack() as stack:
            topologies = stack.enter_context(_topologies())
            for name, url in topologies.items():
                section.setdefault("topologies", {})[name] = {
                    "round_trips": asyncio.run(_round_trips(idp, prefix, users, config.inner, url))
                }
            urls = {
                str(n): stack.enter_context(_serve(n, idp.issuer, prefix)) for n in WORKER_COUNTS
            }
            for name, url in topologies.items():
                urls[f"4 {name}"] = stack.enter_context(_serve(4, idp.issuer, prefix, url))
            before = idp.token_calls
            series, _ = asyncio.run(_throughput(urls, token, config))
            section["token_calls_for_all_workers"] = idp.token_calls - before
            section["stores_served"] = 1 + len(topologies)  # one token per store is right
    finally:
        section["keys_deleted"] = _clean(prefix)
    section["rps"] = {name: summary(s.values) for name, s in series.items()}
    section["vs_one_worker"] = {name: ratio(s, series["1"]) for name, s in series.items()}
    section["load"] = {
        "route": "/header (bearer, warm authorization_header())",
        "generator": "raw asyncio HTTP/1.1 keep-alive loop, in the measuring process",
        "concurrency": config.server_concurrency,
        "seconds_per_sample": config.server_seconds,
        "cores": os.cpu_count(),
    }
    figures["redis"] = section


if __name__ == "__main__":
    main()
