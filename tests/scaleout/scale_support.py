"""Helpers for the scale-out tests: settings, a downstream API, a throwaway Redis, processes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

REDIS_URL = "redis://127.0.0.1:6379/0"
KEY = "scaleout-tests-secret-key-00000000"
HERE = Path(__file__).parent


def digest(value: str) -> str:
    """A short digest of a header value, so reports and failures never show a token."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def settings_data(
    issuer: str,
    store_url: str,
    prefix: str,
    *,
    downstream: str = "http://127.0.0.1:1",
    public_base_url: str | None = None,
    connector: bool = False,
) -> dict[str, Any]:
    """One app's settings: an app-token and an exchange service on a shared store."""
    base = {"base_url": downstream, "allow_http": True}
    data: dict[str, Any] = {
        "secret_keys": [KEY],
        "session": {"dev_insecure_cookies": True},
        "http": {"allow_insecure_loopback": True},
        "bearer": {"issuer": issuer, "audience": "api://app"},
        "client": {"client_id": "test-client", "client_secret": "test-secret"},
        "routes": {"stats": True},
        "services": {
            "billing": {**base, "flow": "client_credentials", "audience": "api://orders",
                        "scopes": ["orders.read"]},
            "reports": {**base, "flow": "client_credentials", "audience": "https://notes.local",
                        "scopes": ["notes.read"]},
            "orders": {**base, "flow": "token_exchange", "audience": "api://orders",
                       "scopes": ["orders.read"]},
        },
        # Generous: the test machine is shared and noisy (the default is 0.5 s).
        "store": {"url": store_url, "key_prefix": prefix, "timeout": 5.0},
    }  # fmt: skip
    if public_base_url is not None:
        data["public_base_url"] = public_base_url
    if connector:
        data["connectors"] = {
            "idp": {
                "standard": "oidc",
                "issuer": issuer,
                "client_id": "test-client",
                "client_secret": "test-secret",
            }
        }
        data["services"]["profile"] = {**base, "flow": "connector", "connector": "idp"}
    return data


def token_requests(idp: Any, grant: str | None = None, *, at_least: int = 0) -> int:
    """Token requests the provider counted (it counts after answering: let it catch up)."""
    count = 0
    for _ in range(500):
        count = int(idp.counters.count(endpoint="token", grant_type=grant))
        if count >= at_least:
            break
        time.sleep(0.01)
    return count


class Downstream:
    """A downstream API that refuses the next ``reject_next`` requests with a 401."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.reject_next = 0
        self.app = Starlette(routes=[Route("/whoami", self.whoami)])

    async def whoami(self, request: Request) -> Any:
        self.seen.append(digest(request.headers.get("authorization", "")))
        if self.reject_next > 0:
            self.reject_next -= 1
            return PlainTextResponse(
                "expired", 401, headers={"www-authenticate": 'Bearer error="invalid_token"'}
            )
        return JSONResponse({"ok": True})


@contextmanager
def uvicorn_worker(settings: dict[str, Any], port: int) -> Iterator[str]:
    """``scale_app:create_app`` under uvicorn in its own process; yield its base URL."""
    import json

    env = {**os.environ, "AUTHRELAY_SCALE_SETTINGS": json.dumps(settings)}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "scale_app:create_app",
         "--app-dir", str(HERE), "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--lifespan", "on"],
        env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            if process.poll() is not None:
                pytest.fail(f"the uvicorn worker exited with {process.returncode}")
            try:
                if httpx.get(f"{base}/plain", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            pytest.fail("the uvicorn worker did not start")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
