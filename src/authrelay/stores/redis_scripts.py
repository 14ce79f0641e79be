"""Redis connection settings and the Lua scripts behind the versioned protocol.

Defends against:

- lost updates and stale writers (RT-01, ST-10): compare-and-set runs as one Lua script,
  so the check and the write are one atomic step on the server. Versions come from one
  monotonic counter per namespace (``INCR``), so a version is never reused, not even
  after a delete or an expiry: a writer holding an old version can never match again;
- a slow or unreachable Redis stalling requests (ST-08): every connection has a
  connect and a read timeout (default 500 ms) and no blind retry (a retried
  compare-and-set that had already been applied would report a lost race);
- credentials in logs: :func:`describe_url` keeps only scheme, hosts and database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "DELETE_SCRIPT",
    "PUT_SCRIPT",
    "SentinelTarget",
    "client_options",
    "describe_url",
    "parse_sentinel_url",
]

# KEYS[1] data key, KEYS[2] version counter; ARGV[1] channel, ARGV[2] value,
# ARGV[3] ttl in ms ("" = none), ARGV[4] expected version ("" = any).
# A value lives in a hash: field "v" the sealed bytes, field "n" its version.
PUT_SCRIPT = """
local current = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= current then
  return false
end
local version = redis.call('INCR', KEYS[2])
if version <= current then
  version = current + 1
  redis.call('SET', KEYS[2], version)
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'n', version)
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
class SentinelTarget:
    """What a ``redis+sentinel://`` URL names (no secrets in ``repr``)."""

    hosts: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False

    def __repr__(self) -> str:
        return f"SentinelTarget(hosts={self.hosts!r}, service={self.service!r}, db={self.db})"


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Parse ``redis+sentinel://[user:pass@]host:port[,host:port]/service[/db][?ssl=true]``."""
    parts = urlsplit(url)
    if parts.scheme != "redis+sentinel":
        raise ValueError("a Sentinel store url starts with redis+sentinel://")
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        credentials, netloc = netloc.rsplit("@", 1)
        user, _, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) or None
    hosts: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "26379")
        if not host:
            raise ValueError("the Sentinel store url names an empty host")
        hosts.append((host.strip("[]"), int(port)))
    segments = [segment for segment in parts.path.split("/") if segment]
    if not segments:
        raise ValueError("the Sentinel store url names no service (redis+sentinel://h:p/name)")
    db = int(segments[1]) if len(segments) > 1 else 0
    ssl = parse_qs(parts.query).get("ssl", ["false"])[0].lower() in {"1", "true", "yes"}
    return SentinelTarget(tuple(hosts), unquote(segments[0]), db, username, password, ssl)


def describe_url(url: str) -> str:
    """The URL without credentials or query, for logs and ``repr``."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc}{parts.path}"
