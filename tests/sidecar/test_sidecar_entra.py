"""The sidecar, driven the way a client written for the Entra SDK for AgentID drives it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from svc_support import APP_SECRET, Downstream, caller_token

from authrelay.relay import Relay
from authrelay.sidecar import create_sidecar_app, sidecar_main
from authrelay.testing import FakeClock
from authrelay.testing.provider import IdentityProvider
from authrelay.testing.servers import free_port, serve_asgi

MakeRelay = Callable[..., tuple[Relay, FakeClock]]
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


class EntraStyleClient:
    """What a sidecar client looks like: JSON headers, query parameters, problem details."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=30)

    def close(self) -> None:
        self.http.close()

    def validate(self) -> dict[str, Any]:
        return self._json("GET", "/Validate")

    def authorization_header(self, api: str, **params: Any) -> str:
        return str(self._json("GET", f"/AuthorizationHeader/{api}", params=params)[
            "authorizationHeader"
        ])  # fmt: skip

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        answer = self.http.request(method, path, **kwargs)
        if answer.status_code >= 400:
            raise SidecarError(answer)
        data: dict[str, Any] = answer.json()
        return data


class SidecarError(Exception):
    def __init__(self, answer: httpx.Response) -> None:
        super().__init__(answer.status_code)
        self.status = answer.status_code
        self.problem = answer.json()
        self.headers = answer.headers


@contextmanager
def sidecar(relay: Relay) -> Iterator[str]:
    with serve_asgi(create_sidecar_app(relay=relay)) as url:
        yield url


@pytest.fixture
def relay(make_relay: MakeRelay) -> Relay:
    return make_relay()[0]


def test_validate_returns_the_callers_claims(relay: Relay, clean_idp: IdentityProvider) -> None:
    token = caller_token(clean_idp, "alice")
    with sidecar(relay) as url:
        client = EntraStyleClient(url, token)
        result = client.validate()
        anonymous = EntraStyleClient(url)
        with pytest.raises(SidecarError) as caught:
            anonymous.validate()
        client.close()
        anonymous.close()
    assert result["protocol"] == "Bearer"
    assert result["token"] == token
    assert result["claims"]["sub"] == "alice"
    assert caught.value.status == 401
    assert caught.value.problem["status"] == 401
    assert caught.value.problem["title"] == "Unauthorized"


def test_authorization_header_for_the_caller_and_overrides(
    relay: Relay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    with sidecar(relay) as url:
        client = EntraStyleClient(url, caller_token(clean_idp, "bob"))
        header = client.authorization_header("orders")
        assert header.startswith("Bearer ")
        assert client.authorization_header("orders") == header  # cached
        claims = clean_idp.keys.verify(header[7:])
        assert claims is not None and claims[1]["sub"] == "bob"
        # Repeatable scopes and a per-call override (a separate cache entry).
        other = client.authorization_header(
            "orders", **{"optionsOverride.Scopes": ["orders.read", "orders.write"]}
        )
        assert other != header
        wide = clean_idp.keys.verify(other[7:])
        assert wide is not None and "orders.write" in wide[1]["scope"]
        # An app token on request, and an agent acting for the user (lower-case names).
        app = client.authorization_header("orders", **{"optionsOverride.RequestAppToken": "true"})
        app_claims = clean_idp.keys.verify(app[7:])
        assert app_claims is not None and app_claims[1]["sub"] == "app"
        acting = client.authorization_header("orders", agentIdentity="planner-agent")
        acting_claims = clean_idp.keys.verify(acting[7:])
        assert acting_claims is not None
        assert acting_claims[1]["act"] == {"sub": "planner-agent"}
        client.close()
    assert clean_idp.counters.count(endpoint="token", grant_type=EXCHANGE) == 3


def test_unauthenticated_header_is_an_app_or_agent_token(
    relay: Relay, clean_idp: IdentityProvider
) -> None:
    with sidecar(relay) as url:
        http = httpx.Client(base_url=url, timeout=30)
        app = http.get("/AuthorizationHeaderUnauthenticated/billing").json()
        agent = http.get(
            "/AuthorizationHeaderUnauthenticated/billing", params={"AgentIdentity": "planner"}
        ).json()
        no_user = http.get("/AuthorizationHeaderUnauthenticated/billing",
                           params={"AgentUsername": "u@example.com"})  # fmt: skip
        bad_id = http.get(
            "/AuthorizationHeaderUnauthenticated/billing",
            params={"AgentIdentity": "planner", "AgentUserId": "not-a-guid"},
        )
        http.close()
    app_claims = clean_idp.keys.verify(app["authorizationHeader"][7:])
    agent_claims = clean_idp.keys.verify(agent["authorizationHeader"][7:])
    assert app_claims is not None and app_claims[1]["client_id"] == "app"
    assert agent_claims is not None and agent_claims[1]["client_id"] == "planner-agent"
    assert no_user.status_code == 400 and no_user.json()["status"] == 400
    assert bad_id.status_code == 400


def test_downstream_api_calls_the_service_and_wraps_the_answer(
    relay: Relay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    token = caller_token(clean_idp, "alice")
    with sidecar(relay) as url:
        http = httpx.Client(base_url=url, timeout=30, headers={
            "Authorization": f"Bearer {token}", "Cookie": "session=canary-cookie"})  # fmt: skip
        result = http.post(
            "/DownstreamApi/orders",
            params={"optionsOverride.RelativePath": "whoami", "optionsOverride.HttpMethod": "Put"},
            json={"hello": "world"},
        ).json()
        unauth = http.get(
            "/downstreamapiunauthenticated/billing",
            params={"optionsOverride.RelativePath": "/status/404"},
        ).json()
        ssrf = http.get(
            "/DownstreamApi/orders",
            params={"optionsOverride.RelativePath": "http://169.254.169.254/latest"},
        )
        http.close()
    assert result["statusCode"] == 200
    body = httpx.Response(200, content=result["content"]).json()
    assert body["sub"] == "alice"
    assert body["body"] == '{"hello":"world"}'
    assert result["headers"]["content-type"] == ["application/json"]
    assert unauth["statusCode"] == 404
    assert ssrf.status_code == 400
    first = downstream.seen[0]
    assert first["cookie"] is None  # DS-02: the caller's cookie never goes downstream
    assert first["authorization"] != f"Bearer {token}"


def test_errors_are_problem_json(
    relay: Relay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    with sidecar(relay) as url:
        client = EntraStyleClient(url, caller_token(clean_idp))
        with pytest.raises(SidecarError) as unknown:
            client.authorization_header("nope")
        clean_idp.faults.add("token", status=503, retry_after=40, count=None)
        with pytest.raises(SidecarError) as down:
            client.authorization_header("billing")
        clean_idp.faults.clear()
        bad = EntraStyleClient(url, "not.a.valid-token")
        with pytest.raises(SidecarError) as invalid:
            bad.authorization_header("orders")
        client.close()
        bad.close()
    assert unknown.value.status == 400
    assert unknown.value.problem["detail"] == "Not able to resolve 'nope'."
    assert down.value.status == 503
    assert down.value.headers["retry-after"] == "40"
    assert down.value.headers["content-type"] == "application/problem+json"
    assert invalid.value.status == 401


def test_sidecar_command_serves_on_loopback(
    tmp_path: Path, idp: IdentityProvider, downstream_url: str
) -> None:
    settings = tmp_path / "authrelay.toml"
    settings.write_text(
        f"""
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
""",
        encoding="utf-8",
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", "from authrelay.cli import main; raise SystemExit(main())",
         "sidecar", "--settings", str(settings), "--port", str(port), "--log-level", "warning"],
        env={**os.environ, "APP_SECRET": APP_SECRET},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        answer = None
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert answer is not None and answer.json() == {"status": "Healthy"}
        header = httpx.get(
            f"http://127.0.0.1:{port}/AuthorizationHeaderUnauthenticated/billing", timeout=30
        ).json()["authorizationHeader"]
        assert header.startswith("Bearer ")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_sidecar_command_rejects_bad_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[services.x]\nflow = "nope"\n', encoding="utf-8")
    assert sidecar_main(["--settings", str(bad)]) == 1
    assert "invalid" in capsys.readouterr().err
