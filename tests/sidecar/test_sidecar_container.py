"""The sidecar container: its entrypoint script run for real, the compose example, the image.

No container engine runs on every machine, so the entrypoint script (the image's whole
start-up logic) is tested directly against a real sidecar process; the image itself is
built only when a Docker engine answers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from svc_support import APP_SECRET

from authrelay import Settings
from authrelay.testing.provider import IdentityProvider
from authrelay.testing.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "sidecar"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
AUTHRELAY = Path(sys.executable).parent / "authrelay"


def _env(port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHRELAY_", "SIDECAR_"))}
    env.update(
        SIDECAR_PORT=str(port),
        SIDECAR_COMMAND=str(AUTHRELAY),
        SIDECAR_PYTHON=sys.executable,
        SIDECAR_LOG_LEVEL="warning",
        **extra,
    )
    return env


def healthcheck(env: dict[str, str]) -> int:
    return subprocess.run(["sh", str(ENTRYPOINT), "healthcheck"], env=env, timeout=30).returncode


@contextmanager
def entrypoint(env: dict[str, str], log: Path) -> Iterator[str]:
    """Run the entrypoint script until the block ends; its stderr goes to ``log``."""
    with log.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(["sh", str(ENTRYPOINT)], env=env, stderr=stderr)
        try:
            deadline = time.monotonic() + 60
            while healthcheck(env) != 0:
                assert process.poll() is None, log.read_text(encoding="utf-8")
                assert time.monotonic() < deadline, "the sidecar did not come up"
                time.sleep(0.2)
            yield f"http://127.0.0.1:{env['SIDECAR_PORT']}"
        finally:
            process.terminate()
            process.wait(timeout=30)


def _toml(idp: IdentityProvider, downstream_url: str) -> str:
    return f"""
dev_mode = true
[bearer]
issuer = "{idp.issuer}"
audience = "api://app"
[client]
client_id = "app"
client_secret = "${{APP_SECRET}}"
[http]
allow_insecure_loopback = true
[services.billing]
base_url = "{downstream_url}"
allow_http = true
flow = "client_credentials"
audience = "api://billing"
"""


def test_entrypoint_with_a_mounted_toml_file(
    tmp_path: Path, idp: IdentityProvider, downstream_url: str
) -> None:
    settings = tmp_path / "authrelay.toml"
    settings.write_text(_toml(idp, downstream_url), encoding="utf-8")
    env = _env(free_port(), SIDECAR_SETTINGS=str(settings), APP_SECRET=APP_SECRET)
    with entrypoint(env, tmp_path / "log") as url:
        assert httpx.get(f"{url}/readyz", timeout=30).json()["status"] == "ready"
        header = httpx.get(f"{url}/AuthorizationHeaderUnauthenticated/billing", timeout=30)
        assert header.json()["authorizationHeader"].startswith("Bearer ")
        assert "authrelay_token_requests_total" in httpx.get(f"{url}/metrics", timeout=30).text
    assert "(loopback only)" in (tmp_path / "log").read_text(encoding="utf-8")
    assert healthcheck(env) != 0  # stopped: the healthcheck fails


def test_entrypoint_with_settings_from_the_environment(
    idp: IdentityProvider, downstream_url: str, tmp_path: Path
) -> None:
    env = _env(
        free_port(),
        SIDECAR_SETTINGS=str(tmp_path / "absent.toml"),
        AUTHRELAY_DEV_MODE="true",
        AUTHRELAY_BEARER__ISSUER=idp.issuer,
        AUTHRELAY_BEARER__AUDIENCE="api://app",
        AUTHRELAY_CLIENT__CLIENT_ID="app",
        AUTHRELAY_CLIENT__CLIENT_SECRET=APP_SECRET,
        AUTHRELAY_HTTP__ALLOW_INSECURE_LOOPBACK="true",
        AUTHRELAY_SERVICES__BILLING__BASE_URL=downstream_url,
        AUTHRELAY_SERVICES__BILLING__ALLOW_HTTP="true",
        AUTHRELAY_SERVICES__BILLING__FLOW="client_credentials",
        AUTHRELAY_SERVICES__BILLING__AUDIENCE="api://billing",
    )
    with entrypoint(env, tmp_path / "log") as url:
        header = httpx.get(f"{url}/AuthorizationHeaderUnauthenticated/billing", timeout=30)
        assert header.json()["authorizationHeader"].startswith("Bearer ")


def test_entrypoint_beyond_loopback_says_so(tmp_path: Path, idp: IdentityProvider) -> None:
    settings = tmp_path / "authrelay.toml"
    settings.write_text(_toml(idp, "http://127.0.0.1:9"), encoding="utf-8")
    env = _env(free_port(), SIDECAR_SETTINGS=str(settings), SIDECAR_HOST="0.0.0.0",
               APP_SECRET=APP_SECRET)  # fmt: skip
    with entrypoint(env, tmp_path / "log"):
        pass
    assert "NOT loopback" in (tmp_path / "log").read_text(encoding="utf-8")


def test_entrypoint_without_settings_explains_and_fails(tmp_path: Path) -> None:
    env = _env(free_port(), SIDECAR_SETTINGS=str(tmp_path / "absent.toml"))
    result = subprocess.run(
        ["sh", str(ENTRYPOINT)], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 64
    assert "no settings" in result.stderr and "AUTHRELAY_" in result.stderr


def test_compose_example_settings_are_valid_and_the_node_app_parses() -> None:
    settings = Settings.from_toml(
        DEPLOY / "authrelay.toml",
        env={
            "ISSUER": "https://login.example.com",
            "CLIENT_SECRET": "s",
            "SESSION_KEY": "k" * 48,
            "ORDERS_URL": "https://orders.example.com",
        },
    )
    assert settings.store.url.startswith("redis://redis:")
    compose = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    for needed in ("redis:", "sidecar:", "app:", "read_only: true", "/app/server.js"):
        assert needed in compose
    app = DEPLOY / "sample-app" / "server.js"
    assert "/AuthorizationHeader/orders" in app.read_text(encoding="utf-8")
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the sample app's syntax is not checked")
    subprocess.run([node, "--check", str(app)], check=True, timeout=60)


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert "USER 10001" in dockerfile
    assert "HEALTHCHECK" in dockerfile and '"authrelay-sidecar", "healthcheck"' in dockerfile
    assert "entrypoint.sh /usr/local/bin/authrelay-sidecar" in dockerfile


def test_image_builds_when_a_container_engine_answers() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine")
    probe = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip("no container engine answers (docker info failed); entrypoint tested directly")
    subprocess.run(
        [docker, "build", "-f", str(DEPLOY / "Dockerfile"), "-t", "authrelay-sidecar:test",
         str(ROOT)],
        check=True, timeout=900,
    )  # fmt: skip
