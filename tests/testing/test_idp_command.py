"""``authrelay idp``: the test provider served for local development, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from authrelay.testing import free_port


@contextmanager
def _idp(*args: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    with subprocess.Popen(
        [sys.executable, "-m", "authrelay.cli", "idp", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        lines: list[str] = []
        try:
            assert process.stdout is not None
            for line in process.stdout:  # the listing ends with the line saying how to stop it
                lines.append(line.rstrip("\n"))
                if line.startswith("Ctrl-C"):
                    break
            yield process, lines
        finally:
            process.terminate()
            process.communicate(timeout=30)


def _value(lines: list[str], label: str) -> str:
    return next(line.split(": ", 1)[1] for line in lines if line.startswith(f"{label}: "))


def test_idp_prints_its_issuer_and_serves_discovery_there() -> None:
    with _idp("--port", "0") as (_, lines):
        issuer = _value(lines, "issuer")
        assert issuer.startswith("http://127.0.0.1:")
        document = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
        assert document["issuer"] == issuer
        assert document["token_endpoint"].startswith(issuer)
        # the printed client credentials work: a client_credentials grant for the orders API
        token = httpx.post(
            document["token_endpoint"],
            data={"grant_type": "client_credentials", "resource": "api://orders"},
            auth=("test-client", "test-secret"),
            timeout=10,
        )
        assert token.status_code == 200, token.text
    assert "  test-client: secret test-secret; grants" in "\n".join(lines)
    assert any(line.startswith("  alice / password: Alice Liddell") for line in lines)
    assert "  api://orders: orders.read orders.write" in lines


def test_idp_listens_on_the_port_it_is_given() -> None:
    port = free_port()
    with _idp("--port", str(port)) as (_, lines):
        assert _value(lines, "issuer") == f"http://127.0.0.1:{port}"
        assert httpx.get(
            f"http://127.0.0.1:{port}/.well-known/openid-configuration", timeout=10
        ).is_success


def test_idp_says_which_port_is_taken() -> None:
    port = free_port()
    with _idp("--port", str(port)):
        second = subprocess.run(
            [sys.executable, "-m", "authrelay.cli", "idp", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in second.stderr
    assert "Traceback" not in second.stderr


def test_idp_login_form_asks_for_a_password_instead_of_signing_in_alice() -> None:
    query = {
        "response_type": "code",
        "client_id": "public-client",
        "redirect_uri": "http://127.0.0.1:8000/auth/idp/callback",
        "scope": "openid",
        "state": "s",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }
    for args, signs_in_alice in (((), True), (("--login-form",), False)):
        with _idp("--port", "0", *args) as (_, lines):
            issuer = _value(lines, "issuer")
            metadata = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
            answer = httpx.get(metadata["authorization_endpoint"], params=query, timeout=10)
        assert (answer.status_code == 302) is signs_in_alice, answer.text
        if not signs_in_alice:
            assert answer.status_code == 200 and 'name="password"' in answer.text
        assert any("(signed in without a form)" in line for line in lines) is signs_in_alice
