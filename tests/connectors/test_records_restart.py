"""Connector records survive a restart of the app process (issue 18 §4, "Tests")."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from authrelay.testing import IdentityProvider, free_port

KEY = "restart-tests-secret-key-00000000"
APP = """
import os
from authrelay import AuthRelayMiddleware, Settings

async def inner(scope, receive, send):
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})

app = AuthRelayMiddleware(inner, settings=Settings.from_toml(os.environ["RELAY_SETTINGS"]))
"""


def _settings(tmp_path: Path, issuer: str, base: str) -> Path:
    path = tmp_path / "authrelay.toml"
    path.write_text(
        f"""
secret_keys = ["{KEY}"]
public_base_url = "{base}"

[session]
dev_insecure_cookies = true

[http]
allow_insecure_loopback = true

[store]
url = "sqlite:///{tmp_path / "relay.db"}"

[bearer]
issuer = "{issuer}"
audience = "api://orders"

[admin]
enabled = true

[connectors.idp]
standard = "oidc"
issuer = "{issuer}"
client_id = "test-client"
client_secret = "test-secret"
""",
        encoding="utf-8",
    )
    return path


@contextmanager
def _app_process(tmp_path: Path, settings: Path, port: int) -> Iterator[str]:
    """``uvicorn relay_app:app`` in its own process; killed (SIGKILL) at exit."""
    (tmp_path / "relay_app.py").write_text(APP, encoding="utf-8")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "relay_app:app", "--host", "127.0.0.1"),
            *("--port", str(port), "--lifespan", "off", "--log-level", "warning"),
        ],
        cwd=tmp_path,
        env={"RELAY_SETTINGS": str(settings), "PATH": "/usr/bin:/bin"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "the app process exited"
            try:
                httpx.get(f"{base}/auth/connectors", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the app process did not start"
                time.sleep(0.05)
        yield base
    finally:
        process.kill()  # no graceful shutdown: what was saved must already be on disk
        process.wait(10)


def test_connector_records_survive_a_restart_of_the_app_process(
    idp: IdentityProvider, tmp_path: Path
) -> None:
    port = free_port()
    settings = _settings(tmp_path, idp.issuer, f"http://127.0.0.1:{port}")
    admin = {"authorization": f"Bearer {idp.mint_access_token(scope='authrelay.admin')}"}
    with _app_process(tmp_path, settings, port) as base:
        changed = httpx.patch(
            f"{base}/auth/admin/connectors/idp",
            headers=admin,
            json={
                "config": {"scopes": ["openid", "email"], "client_secret": "rotated-secret"},
                "metadata": {"logo": "https://cdn.example/sso.svg"},
            },
        )
        assert changed.status_code == 200, changed.text
        assert httpx.post(f"{base}/auth/admin/connectors/idp/disable", headers=admin).is_success
        assert httpx.get(f"{base}/auth/connectors").json() == {"connectors": []}
    assert b"rotated-secret" not in (tmp_path / "relay.db").read_bytes()  # sealed at rest

    with _app_process(tmp_path, settings, port) as base:
        assert httpx.get(f"{base}/auth/connectors").json() == {"connectors": []}
        assert httpx.get(f"{base}/auth/idp/login").status_code == 404
        shown = httpx.get(f"{base}/auth/admin/connectors/idp", headers=admin).json()
        assert shown["enabled"] is False and shown["logo"] == "https://cdn.example/sso.svg"
        assert shown["overrides"]["config"] == ["client_secret", "scopes"]
        assert "rotated-secret" not in str(shown)
        assert httpx.post(f"{base}/auth/admin/connectors/idp/enable", headers=admin).is_success
        start = httpx.get(f"{base}/auth/idp/login")
        assert start.status_code == 302
        assert "scope=openid+email" in start.headers["location"]
