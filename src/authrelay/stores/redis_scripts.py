"""Redis connection targets and the Lua scripts behind the versioned protocol.

Defends against:

- lost updates and stale writers (RT-01, ST-10): compare-and-set runs as one Lua script,
  so the check and the write are one atomic step on the server. Each script touches one
  key only, so it runs unchanged on a single server, behind Sentinel and on Redis
  Cluster (where a script's keys must share a slot);
- a version coming back (a stale writer matching a newer record): a record's version is
  the larger of its previous version + 1 and the server clock in microseconds, so a
  record made again after a delete or an expiry starts above every version it had
  before. Versions could only repeat if the Redis host's clock stepped back past a
  version still held by a writer, and then only by landing on that exact microsecond;
- a slow or unreachable Redis stalling requests (ST-08): every connection has a
  connect and a read timeout (default 500 ms) and no blind retry (a retried
  compare-and-set that had already been applied would report a lost race);
- credentials in logs: :func:`describe_url` keeps only scheme, hosts and database, and
  :class:`RedisTarget` leaves the password out of its ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "CLUSTER_SCHEMES",
    "DELETE_SCRIPT",
    "MULTI_HOST_SCHEMES",
    "PUT_SCRIPT",
    "SENTINEL_SCHEMES",
    "RedisTarget",
    "client_options",
    "describe_url",
    "parse_multi_host_url",
]

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
MULTI_HOST_SCHEMES = SENTINEL_SCHEMES + CLUSTER_SCHEMES
"""URL schemes naming several hosts (Sentinels or Cluster seed nodes) rather than one."""

# KEYS[1] data key; ARGV[1] channel, ARGV[2] value, ARGV[3] ttl in ms ("" = none),
# ARGV[4] expected version ("" = any). A record is a hash: field "v" the sealed bytes,
# field "n" its version. Versions stay below 2^53 (microseconds until the year 2255), so
# Lua's doubles hold them exactly; '%.0f' writes them without an exponent.
PUT_SCRIPT = """
local current = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= current then
  return false
end
local now = redis.call('TIME')
local version = math.max(current + 1, tonumber(now[1]) * 1000000 + tonumber(now[2]))
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'n', string.format('%.0f', version))
if ARGV[3] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('PERSIST', KEYS[1])
end
if current > 0 then
  redis.call('PUBLISH', ARGV[1], KEYS[1])
end
return version
"""

# KEYS[1] data key; ARGV[1] channel, ARGV[2] expected version ("" = any).
DELETE_SCRIPT = """
local current = redis.call('HGET', KEYS[1], 'n')
if not current then
  return 0
end
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= tonumber(current) then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], KEYS[1])
return 1
"""


def client_options(timeout: float) -> dict[str, Any]:
    """Keyword arguments for every redis-py client and pool (sync and async alike)."""
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry_on_timeout": False,
        "health_check_interval": 15,
    }


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What a Sentinel or Cluster URL names (no secrets in ``repr``).

    ``service`` is the Sentinel master's name (empty for Cluster); ``hosts`` are the
    Sentinels, or the Cluster nodes to discover the others from.
    """

    kind: Literal["sentinel", "cluster"]
    hosts: tuple[tuple[str, int], ...]
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False

    def __repr__(self) -> str:
        return (
            f"RedisTarget(kind={self.kind!r}, hosts={self.hosts!r}, "
            f"service={self.service!r}, db={self.db}, ssl={self.ssl})"
        )


def _host_port(item: str, default_port: int) -> tuple[str, int]:
    if item.startswith("["):  # [v6::addr] or [v6::addr]:port
        host, _, rest = item[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif item.count(":") == 1:
        host, _, port = item.partition(":")
    else:
        host, port = item, ""
    if not host:
        raise ValueError("the store url names an empty host")
    if port and not port.isdigit():
        raise ValueError(f"the store url names a port that is not a number: {port!r}")
    return host, int(port) if port else default_port


def parse_multi_host_url(url: str) -> RedisTarget:
    """Parse a Sentinel or Cluster URL.

    - ``redis+sentinel://[user:pass@]host[:port][,host[:port]]/service[/db][?ssl=true]``
      (Sentinels default to port 26379);
    - ``redis+cluster://[user:pass@]host[:port][,host[:port]][/0][?ssl=true]``
      (seed nodes default to port 6379; Cluster has database 0 only).

    ``rediss+…`` is the same with TLS.
    """
    parts = urlsplit(url)
    if parts.scheme not in MULTI_HOST_SCHEMES:
        raise ValueError(f"a multi-host store url starts with one of {MULTI_HOST_SCHEMES}")
    kind: Literal["sentinel", "cluster"] = (
        "sentinel" if parts.scheme in SENTINEL_SCHEMES else "cluster"
    )
    netloc, username, password = parts.netloc, None, None
    if "@" in netloc:
        credentials, netloc = netloc.rsplit("@", 1)
        user, _, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) or None
    default_port = 26379 if kind == "sentinel" else 6379
    hosts = tuple(_host_port(item, default_port) for item in netloc.split(","))
    segments = [segment for segment in parts.path.split("/") if segment]
    query = parse_qs(parts.query)
    ssl = parts.scheme.startswith("rediss") or query.get("ssl", ["false"])[0].lower() in {
        "1",
        "true",
        "yes",
    }
    if kind == "sentinel":
        if not segments:
            raise ValueError(
                "the Sentinel store url names no service (redis+sentinel://host:26379/name)"
            )
        db = int(segments[1]) if len(segments) > 1 else 0
        return RedisTarget(kind, hosts, unquote(segments[0]), db, username, password, ssl)
    if segments not in ([], ["0"]):
        raise ValueError("Redis Cluster has database 0 only (redis+cluster://host:6379)")
    return RedisTarget(kind, hosts, "", 0, username, password, ssl)


def describe_url(url: str) -> str:
    """The URL without credentials or query, for logs and ``repr``."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc}{parts.path}"
