"""TR-03: the total deadline holds under ASGI and WSGI alike, while the status line, the
headers or the body of a token-endpoint answer are drip-fed (one byte every 0.25 s).

The token endpoint is a real loopback server; the relay uses its default HTTP clients.
The bound asserted is a correctness bound (twice the timeout plus 2 s), not a timing
measurement: before the fix, WSGI held the request for about 47 s.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from upstream_helpers import Upstream, http_answer, upstream

from asgi_lifespan import answer_lifespan
from authrelay import AuthRelayMiddleware, Relay, Settings
from authrelay.testing import free_port, serve_asgi
from authrelay.testing.servers import serve_wsgi
from authrelay.wsgi import AuthRelayWSGIMiddleware

TIMEOUT = 3.0
BOUND = 2 * TIMEOUT + 2
CLIENT_SECRET = "deadline-client-secret-4d1c"
TOKEN = "drip-fed-access-token-8c2f"
ANSWER = http_answer(
    json.dumps({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300}).encode()
)
HEAD = ANSWER.index(b"\r\n\r\n") + 4


async def _asgi_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return await answer_lifespan(receive, send)
    await scope["state"]["services"]["api"].get("/x")  # authrelay errors propagate
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    environ["authrelay.services"]["api"].get("/x")
    start_response("200 OK", [])
    return [b"ok"]


def _settings(base: str, token_url: str) -> Settings:
    return Settings.model_validate(
        {
            "secret_keys": ["deadline-tests-cookie-key-0000000000"],
            "public_base_url": base,
            "session": {"dev_insecure_cookies": True},
            "http": {"allow_insecure_loopback": True, "token_timeout": TIMEOUT},
            "client": {"client_id": "app", "client_secret": CLIENT_SECRET},
            "connectors": {
                "idp": {
                    "standard": "oauth2",
                    "authorization_endpoint": f"{token_url}/authorize",
                    "token_endpoint": f"{token_url}/token",
                    "userinfo_endpoint": f"{token_url}/userinfo",
                    "client_id": "rp",
                    "client_secret": CLIENT_SECRET,
                }
            },
            "services": {
                "api": {
                    "base_url": "http://127.0.0.1:9",
                    "allow_http": True,
                    "flow": "client_credentials",
                    "token_endpoint": f"{token_url}/token",
                    "scopes": ["api.read"],
                }
            },
        }
    )


@contextmanager
def _served(shell: str, token_url: str) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    relay = Relay(_settings(base, token_url))
    server: AbstractContextManager[str]
    if shell == "wsgi":
        server = serve_wsgi(AuthRelayWSGIMiddleware(_wsgi_app, relay=relay), port=port)
    else:
        server = serve_asgi(AuthRelayMiddleware(_asgi_app, relay=relay), port=port)
    try:
        with server:
            yield base
    finally:
        relay.close()


def _timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def _check(response: httpx.Response, elapsed: float, caplog: pytest.LogCaptureFixture) -> None:
    assert response.status_code in (502, 503, 504), response.text  # typed, never 500
    assert elapsed < BOUND, f"answered after {elapsed:.1f} s"
    seen = response.text + "".join(f"{k}{v}" for k, v in response.headers.items()) + caplog.text
    assert TOKEN not in seen and CLIENT_SECRET not in seen  # INV-1


@pytest.mark.parametrize("drip_from", [0, HEAD], ids=["status-line", "body"])
def test_tr03_drip_fed_client_credentials_answer_within_deadline(
    shell: str, drip_from: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with upstream(ANSWER, drip_from=drip_from) as idp, _served(shell, idp.url) as base:
        with httpx.Client(timeout=60) as client:
            response, elapsed = _timed(lambda: client.get(f"{base}/anything"))
        _check(response, elapsed, caplog)
        assert response.status_code == 504
        assert len(idp.requests) == 1  # a timed-out attempt is not retried


def _callback(client: httpx.Client, base: str, idp: Upstream) -> httpx.Response:
    start = client.get(f"{base}/auth/idp/login")
    assert start.status_code == 302, start.text
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    return client.get(f"{base}/auth/idp/callback", params={"code": "c0de", "state": state})


@pytest.mark.parametrize("drip_from", [0, HEAD], ids=["status-line", "body"])
def test_tr03_drip_fed_code_exchange_answers_within_deadline(
    shell: str, drip_from: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with upstream(ANSWER, drip_from=drip_from) as idp, _served(shell, idp.url) as base:
        with httpx.Client(timeout=60) as client:
            response, elapsed = _timed(lambda: _callback(client, base, idp))
        assert response.status_code != 500
        assert elapsed < BOUND, f"answered after {elapsed:.1f} s"
        assert [r for r in idp.requests if b"grant_type=authorization_code" in r]
        seen = response.text + caplog.text
        assert TOKEN not in seen and CLIENT_SECRET not in seen
