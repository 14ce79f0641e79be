"""Start and stop the certified oidc-provider (node) that interop tests talk to.

Defends the test session: the node process runs in its own process group and is killed
with it, and it exits on its own when its standard input (held by this process) closes, so
no provider outlives pytest even when pytest itself is killed.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from oidc_harness import OidcProvider, OidcProviderError, OidcProviderSettings

from authrelay.testing.servers import free_port

__all__ = ["install_oidc_provider", "start_oidc_provider"]

SERVER_DIR = Path(__file__).resolve().parent / "oidc_provider"
INSTALL_SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "install-interop.sh"


def install_oidc_provider() -> None:
    """Run ``.ci/install-interop.sh`` (quick when ``node_modules`` matches the lock file)."""
    done = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise OidcProviderError(f"installing oidc-provider failed:\n{done.stderr[-2000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.stdin:
        process.stdin.close()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            continue


def _wait_for_discovery(
    process: subprocess.Popen[bytes], http: httpx.Client, issuer: str, timeout: float
) -> dict[str, Any] | None:
    """The discovery document, or ``None`` if the process exited first."""
    deadline = time.monotonic() + timeout
    url = f"{issuer}/.well-known/openid-configuration"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        try:
            response = http.get(url)
            if response.status_code == 200:
                document: dict[str, Any] = response.json()
                return document
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise OidcProviderError(f"oidc-provider did not serve discovery within {timeout} s")


@contextmanager
def start_oidc_provider(
    settings: OidcProviderSettings, workdir: Path, *, node: str = "node", timeout: float = 30.0
) -> Iterator[OidcProvider]:
    """Start ``server.mjs`` on a free loopback port; yield the running provider.

    Its output goes to ``workdir/oidc-provider.log``, quoted in errors if it fails to start.
    """
    install_oidc_provider()
    initial_access_token = secrets.token_urlsafe(32)
    config_path = workdir / "oidc-provider.json"
    config = {
        "clients": {
            "rp": {
                "client_id": settings.rp_client.client_id,
                "client_secret": settings.rp_client.client_secret,
                "redirect_uris": list(settings.redirect_uris),
                "post_logout_redirect_uris": list(settings.post_logout_redirect_uris),
            },
            "api": settings.api_client._asdict(),
        },
        "initial_access_token": initial_access_token,
        "profile": settings.profile,
        **({"default_resource": settings.default_resource} if settings.default_resource else {}),
        "resources": {
            **{k: {"scopes": list(v), "format": "jwt"} for k, v in settings.resources.items()},
            **{
                k: {"scopes": list(v), "format": "opaque"}
                for k, v in settings.opaque_resources.items()
            },
        },
    }
    config_path.write_text(json.dumps(config))
    log_path = workdir / "oidc-provider.log"
    for _attempt in range(3):  # another process may take the free port before node binds it
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        provider = OidcProvider(issuer, settings, initial_access_token)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [node, "server.mjs", "--port", str(port), "--config", str(config_path)],
                cwd=SERVER_DIR,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            discovery = _wait_for_discovery(process, provider.http, issuer, timeout)
            if discovery is None:
                if "cannot listen" in log_path.read_text():
                    continue
                break
            provider.discovery = discovery
            yield provider
            return
        finally:
            provider.close()
            _stop(process)
    raise OidcProviderError(f"oidc-provider did not start:\n{log_path.read_text()[-2000:]}")
