"""Two uvicorn processes with the same settings on one Redis (one server, Cluster or
Sentinel): sign in on one, work on the other, log out on the other (issue #6 multi-worker
end to end, over real HTTP)."""

from __future__ import annotations

import time

import httpx
import pytest
from scale_support import Downstream, settings_data, token_requests, uvicorn_worker

from authrelay.testing import IdentityProvider, free_port, serve_asgi

pytestmark = [pytest.mark.redis, pytest.mark.slow]

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def test_sign_in_on_worker_a_use_services_and_log_out_on_worker_b(
    identity_provider_server: IdentityProvider, prefix: str, redis_url: str
) -> None:
    idp = identity_provider_server
    port_a, port_b = free_port(), free_port()
    base_a = f"http://127.0.0.1:{port_a}"
    downstream = Downstream()
    with serve_asgi(downstream.app) as api:
        # One deployment: both workers have the same settings (one public URL).
        data = settings_data(
            idp.issuer, redis_url, prefix, downstream=api, public_base_url=base_a, connector=True
        )
        with (
            uvicorn_worker(data, port_a) as worker_a,
            uvicorn_worker(data, port_b) as worker_b,
            httpx.Client(follow_redirects=False, timeout=30) as browser,
        ):
            # Sign in through the connector on worker A (login → provider → callback).
            start = browser.get(f"{worker_a}/auth/idp/login")
            assert start.status_code == 302, start.text
            at_idp = browser.get(start.headers["location"])
            assert at_idp.status_code in (302, 303), at_idp.text
            callback = browser.get(at_idp.headers["location"])
            assert callback.status_code in (302, 303), callback.text
            cookies = dict(browser.cookies)
            assert cookies, "the callback set no session cookie"
            assert browser.get(f"{worker_a}/whoami").json()["kind"] == "session"

            # The same cookie on worker B: the session and the user's connector token
            # come from Redis.
            assert browser.get(f"{worker_b}/whoami").json() == {
                "kind": "session",
                "subject": browser.get(f"{worker_a}/whoami").json()["subject"],
            }
            on_b = browser.get(f"{worker_b}/header/profile")
            assert on_b.status_code == 200, on_b.text
            on_a = browser.get(f"{worker_a}/header/profile")
            assert on_a.json()["header"] == on_b.json()["header"]  # the token from the login

            # A token-exchange service for a bearer caller: one exchange for both workers.
            caller = idp.mint_access_token(sub="alice", audience="api://app", expires_in=3600)
            bearer = {"authorization": f"Bearer {caller}"}
            first = httpx.get(f"{worker_b}/header/orders", headers=bearer, timeout=30)
            assert first.status_code == 200, first.text
            second = httpx.get(f"{worker_a}/header/orders", headers=bearer, timeout=30)
            assert second.json()["header"] == first.json()["header"]
            assert httpx.get(f"{worker_a}/call/orders", headers=bearer, timeout=30).json() == {
                "status": 200
            }
            assert token_requests(idp, EXCHANGE, at_least=1) == 1

            # Log out on worker B: the session ends on worker A too.
            out = browser.post(f"{worker_b}/auth/logout", headers={"origin": base_a})
            assert out.status_code in (200, 302, 303), out.text
            stale = httpx.Cookies(cookies)
            for _ in range(500):  # until A's listener has heard (bounded; not a latency test)
                seen = httpx.get(f"{worker_a}/whoami", cookies=stale, timeout=30).json()
                if seen["kind"] != "session":
                    break
                time.sleep(0.02)
            assert seen["kind"] == "anonymous"
            profile = httpx.get(f"{worker_a}/header/profile", cookies=stale, timeout=30)
            assert profile.status_code in (401, 302), profile.text
