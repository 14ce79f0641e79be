"""Throwaway Redis deployments on loopback ports: one server, Sentinel, Cluster.

Tests start them, kill parts of them (an outage, a failover) and start them again, so a
store is checked against the real topology it will meet in production rather than a
fake. Each needs only the ``redis-server`` and ``redis-cli`` binaries (Debian's
``redis-server`` package); nothing is kept on disk except in the directory a test gives.

- :class:`RedisServer`: one ``redis-server``;
- :class:`RedisSentinelGroup`: a master, its replicas and Sentinels watching them
  (``store.url = group.url`` is a ``redis+sentinel://`` URL);
- :class:`RedisClusterGroup`: a Redis Cluster of masters (and replicas), slots assigned
  (``store.url = cluster.url`` is a ``redis+cluster://`` URL).

Each is also a context manager: ``with RedisClusterGroup() as cluster:`` starts it and
stops it whatever happens.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Self

from .servers import free_port

__all__ = ["RedisClusterGroup", "RedisSentinelGroup", "RedisServer", "free_ports", "redis_cli"]

_PR_SET_PDEATHSIG = 1
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None)
except OSError:
    _LIBC = None


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _die_with_parent() -> None:
    """Ask Linux to kill the server when the test process dies (no stray servers).

    Runs in the child between fork and exec, so it only calls the already loaded libc.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (Debian package redis-server)")
    return path


def redis_cli(port: int, *args: str, timeout: float = 10.0) -> str:
    """Run ``redis-cli -p port args…`` on 127.0.0.1 and return what it printed."""
    done = subprocess.run(  # noqa: S603 (a fixed binary, loopback only)
        [_binary("redis-cli"), "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.stdout.strip()


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _replica_in_sync(port: int) -> bool:
    return "master_link_status:up" in redis_cli(port, "INFO", "replication")


def _wait_until(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not happen within {timeout} s")


class _Started:
    """``with Deployment(...) as it:`` starts it and always stops it."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()  # whatever did start
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class RedisServer(_Started):
    """A throwaway ``redis-server`` on a loopback port, stopped and started by the test.

    Nothing is kept on disk unless ``data_dir`` is given (then append-only, fsync always,
    so a restart finds what was written). ``extra`` are more ``redis-server`` arguments
    (``["--replicaof", "127.0.0.1", "6380"]``, Cluster options).
    """

    def __init__(
        self, port: int = 0, *, data_dir: str | None = None, extra: Sequence[str] = ()
    ) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        self.extra = tuple(extra)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, running={self.process is not None})"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        if self.data_dir:
            persistence = ["--appendonly", "yes", "--appendfsync", "always", "--dir", self.data_dir]
        else:  # a private, empty directory: never a dump.rdb left in the working directory
            self._scratch = tempfile.TemporaryDirectory(prefix="authrelay-redis-")
            persistence = ["--appendonly", "no", "--dir", self._scratch.name]
        self.process = subprocess.Popen(  # noqa: S603 (a fixed binary, loopback only)
            [_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--daemonize", "no", *persistence, *self.extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        try:
            _wait_until(lambda: _answers_ping(self.port), f"redis-server on {self.port}", timeout)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill the server (an abrupt outage) and wait for it to exit."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None


class RedisSentinelGroup(_Started):
    """A master, ``replicas`` replicas and ``sentinels`` Sentinels (quorum 1) for ``service``.

    Sentinels declare the master down after ``down_after_ms`` without an answer and then
    promote a replica, so killing :attr:`master` starts a real failover.
    """

    def __init__(
        self,
        *,
        service: str = "authrelay",
        replicas: int = 1,
        sentinels: int = 1,
        down_after_ms: int = 1000,
    ) -> None:
        self.service = service
        self.down_after_ms = down_after_ms
        self._dir = tempfile.TemporaryDirectory(prefix="authrelay-sentinel-")
        ports = free_ports(1 + replicas + sentinels)
        self.servers = [RedisServer(ports[0])]
        self.servers += [
            RedisServer(port, extra=["--replicaof", "127.0.0.1", str(ports[0])])
            for port in ports[1 : 1 + replicas]
        ]
        self.sentinel_ports = ports[1 + replicas :]
        self._sentinels: list[subprocess.Popen[bytes]] = []

    def __repr__(self) -> str:
        return f"RedisSentinelGroup(service={self.service!r}, ports={self.sentinel_ports!r})"

    @property
    def url(self) -> str:
        """``redis+sentinel://…`` naming every Sentinel and the service."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    @property
    def master(self) -> RedisServer:
        """The server Sentinel currently names as master."""
        answer = redis_cli(
            self.sentinel_ports[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
        ).split()
        port = int(answer[1]) if len(answer) == 2 else self.servers[0].port
        return next(server for server in self.servers if server.port == port)

    def start(self, timeout: float = 20.0) -> None:
        """Start the servers, wait for replication, then the Sentinels."""
        for server in self.servers:
            server.start()
        master_port = self.servers[0].port
        for replica in self.servers[1:]:
            _wait_until(
                partial(_replica_in_sync, replica.port), f"replica {replica.port} syncing", timeout
            )
        for port in self.sentinel_ports:
            config = Path(self._dir.name) / f"sentinel-{port}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self._dir.name}\n"
                f"sentinel monitor {self.service} 127.0.0.1 {master_port} 1\n"
                f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.service} 10000\n"
            )
            self._sentinels.append(
                subprocess.Popen(  # noqa: S603 (a fixed binary, loopback only)
                    [_binary("redis-server"), str(config), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    preexec_fn=_die_with_parent,
                )
            )
        for port in self.sentinel_ports:
            _wait_until(
                partial(self._watching, port, master_port),
                f"sentinel {port} watching the master",
                timeout,
            )

    def _watching(self, sentinel_port: int, master_port: int) -> bool:
        answer = redis_cli(sentinel_port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return str(master_port) in answer.split()

    def wait_for_failover(self, old: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Wait until Sentinel names a master other than ``old`` that accepts writes."""

        def promoted() -> bool:
            current = self.master
            return current is not old and "role:master" in redis_cli(
                current.port, "INFO", "replication"
            )

        _wait_until(promoted, "a Sentinel failover", timeout)
        return self.master

    def stop(self) -> None:
        """Kill every Sentinel and server and remove the configuration files."""
        for process in self._sentinels:
            process.kill()
            process.wait(timeout=10)
        self._sentinels.clear()
        for server in self.servers:
            server.stop()
        self._dir.cleanup()


class RedisClusterGroup(_Started):
    """A Redis Cluster of ``masters`` masters with ``replicas`` replicas each.

    ``node_timeout_ms`` is ``cluster-node-timeout``: a killed master's replica takes over
    after about that long.
    """

    def __init__(self, *, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 1000) -> None:
        if masters < 3:
            raise ValueError("redis-cli creates a Cluster of at least 3 masters")
        self.masters, self.replicas = masters, replicas
        self._dir = tempfile.TemporaryDirectory(prefix="authrelay-cluster-")
        nodes = masters * (1 + replicas)
        ports = free_ports(2 * nodes)  # a client port and a cluster bus port per node
        self.servers = [
            RedisServer(
                ports[index],
                extra=[
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", f"{self._dir.name}/nodes-{index}.conf",
                    "--cluster-port", str(ports[nodes + index]),  # port + 10000 may not exist
                    "--cluster-node-timeout", str(node_timeout_ms),
                    "--cluster-require-full-coverage", "yes",
                ]
            )
            for index in range(nodes)
        ]  # fmt: skip

    def __repr__(self) -> str:
        return f"RedisClusterGroup(ports={[server.port for server in self.servers]!r})"

    @property
    def url(self) -> str:
        """``redis+cluster://…`` naming the first masters as seed nodes."""
        seeds = ",".join(f"127.0.0.1:{server.port}" for server in self.servers[:2])
        return f"redis+cluster://{seeds}"

    def start(self, timeout: float = 30.0) -> None:
        """Start every node, assign the slots and wait until the Cluster reports ok."""
        for server in self.servers:
            server.start()
        addresses = [f"127.0.0.1:{server.port}" for server in self.servers]
        created = subprocess.run(  # noqa: S603 (a fixed binary, loopback only)
            [_binary("redis-cli"), "--cluster", "create", *addresses,
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )  # fmt: skip
        if created.returncode != 0:
            self.stop()
            raise RuntimeError("redis-cli --cluster create failed: " + created.stdout[-400:])
        self.wait_until_ok(timeout)
        for server in self.servers:  # a replica that never synced cannot take over
            if "role:slave" in redis_cli(server.port, "INFO", "replication"):
                _wait_until(
                    partial(_replica_in_sync, server.port),
                    f"replica {server.port} syncing",
                    timeout,
                )

    def node_state(self, server: RedisServer) -> str:
        """``cluster_state`` as ``server`` reports it (``ok`` or ``fail``)."""
        for line in redis_cli(server.port, "CLUSTER", "INFO").splitlines():
            if line.startswith("cluster_state:"):
                return line.split(":", 1)[1].strip()
        return "unknown"

    def wait_until_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node reports ``cluster_state:ok``."""
        _wait_until(
            lambda: all(self.node_state(s) == "ok" for s in self.servers if s.running),
            "cluster_state:ok on every node",
            timeout,
        )

    def master_for(self, key: str) -> RedisServer:
        """The running server that currently serves ``key``'s slot as master."""
        probe = next(server for server in self.servers if server.running)
        slot = int(redis_cli(probe.port, "CLUSTER", "KEYSLOT", key))
        for line in redis_cli(probe.port, "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                    return next(server for server in self.servers if server.port == port)
        raise RuntimeError(f"no master serves slot {slot}")

    def wait_for_failover(self, key: str, old: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Wait until a running master other than ``old`` serves ``key`` and the Cluster is ok."""

        def promoted() -> bool:
            try:
                current = self.master_for(key)
            except RuntimeError:
                return False
            return current is not old and current.running

        _wait_until(promoted, f"a Cluster failover away from {old.port}", timeout)
        self.wait_until_ok(timeout)
        return self.master_for(key)

    def stop(self) -> None:
        """Kill every node and remove the Cluster's configuration files."""
        for server in self.servers:
            server.stop()
        self._dir.cleanup()
