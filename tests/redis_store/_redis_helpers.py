"""Helpers for the Redis tests: the shared server's URL and throwaway servers."""

from __future__ import annotations

from authrelay.testing.servers import RedisServer, free_port

__all__ = ["REDIS_URL", "RedisServer", "free_port"]

REDIS_URL = "redis://127.0.0.1:6379/0"
