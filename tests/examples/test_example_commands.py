"""Each example runs with the command its docstring gives, beside ``authrelay idp``.

The commands are read from the docstrings (the indented block after "Run it"), started
as a user would from the project root (with a free port instead of 8000 and 9000), and
one real request goes through each: a bearer token from the provider's token endpoint,
exchanged by the example for the orders service (RFC 8693).
"""

from __future__ import annotations

import ast
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from authrelay.testing import free_port
from authrelay.testing.devserver import DEFAULT_PORT
from authrelay.testing.pytest_plugin import default_provider_config

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXAMPLES = {
    "starlette": ROOT / "examples" / "starlette_app.py",
    "fastapi": ROOT / "examples" / "fastapi_app.py",
    "flask": ROOT / "examples" / "flask_app.py",
    "django": ROOT / "examples" / "django_app" / "__init__.py",
}


def documented_commands(path: Path) -> list[str]:
    """The commands of the docstring's "Run it" block, comments dropped."""
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    block = docstring.split("Run it", 1)[1].split("::\n\n", 1)[1].split("\n\n", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines()]


def _argv(command: str, port: int) -> list[str]:
    """The command, run from this virtual environment, on ``port`` rather than 8000."""
    words = shlex.split(command)
    if words[0] == "python":
        words[0] = sys.executable
    elif words[0] == "authrelay" and not (BIN / "authrelay").exists():
        words[:1] = [sys.executable, "-m", "authrelay.cli"]
    else:
        words[0] = shutil.which(words[0], path=str(BIN)) or words[0]
    if "--port" in words:
        words[words.index("--port") + 1] = str(port)
    else:
        words += ["--port", str(port)]
    return words


def _wait(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args} exited with {process.returncode}"
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within 60 s")


@contextmanager
def _run(argv: list[str], url: str, env: dict[str, str]) -> Iterator[None]:
    with subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL) as process:
        try:
            _wait(url, process)
            yield
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def idp_url() -> Iterator[str]:
    """``authrelay idp``, the first command of every example, on a free port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _run(
        _argv("authrelay idp", port), f"{url}/.well-known/openid-configuration", dict(os.environ)
    ):
        yield url


def test_every_example_documents_the_provider_and_its_own_command() -> None:
    for name, path in EXAMPLES.items():
        commands = documented_commands(path)
        assert commands[0] == "authrelay idp", name
        assert len(commands) == 2, (name, commands)


def test_example_defaults_are_those_of_authrelay_idp() -> None:
    from examples.local_provider import LOCAL_DEFAULTS

    assert LOCAL_DEFAULTS["AUTHRELAY_ISSUER"] == f"http://127.0.0.1:{DEFAULT_PORT}"
    client = next(c for c in default_provider_config()["clients"] if c.client_id == "test-client")
    assert LOCAL_DEFAULTS["AUTHRELAY_CLIENT_SECRET"] == client.client_secret


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_documented_command_serves_a_request_through_the_example(
    name: str, idp_url: str, orders_url: str
) -> None:
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AUTHRELAY_", "DJANGO_"))},
        "AUTHRELAY_ISSUER": idp_url,  # what the defaults say, but on a free port
        "ORDERS_URL": orders_url,
    }
    token = httpx.post(
        f"{idp_url}/token",
        data={
            "grant_type": "client_credentials",
            "resource": "api://orders",
            "scope": "orders.read",
        },
        auth=("test-client", "test-secret"),
        timeout=10,
    ).json()["access_token"]
    with _run(_argv(documented_commands(EXAMPLES[name])[1], port), f"{app_url}/", env):
        response = httpx.get(
            f"{app_url}/orders",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=30,
        )
    assert response.status_code == 200, response.text
    assert response.json()["sub"] == "test-client"
    assert response.json()["aud"] == "api://orders"
