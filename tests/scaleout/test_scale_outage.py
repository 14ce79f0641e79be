"""Redis stops and starts again: 503 only where the store is needed (issue #6, ST-04)."""

from __future__ import annotations

import httpx
import pytest
from scale_app import build
from scale_support import settings_data, token_requests

from authrelay import Relay, Settings
from authrelay.testing import IdentityProvider, serve_asgi
from authrelay.testing.redis_servers import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_st04_store_down_503_for_uncached_tokens_others_keep_answering_then_resume(
    identity_provider_server: IdentityProvider,
) -> None:
    idp = identity_provider_server
    server = RedisServer()
    server.start()
    relay = Relay(Settings.model_validate(settings_data(idp.issuer, server.url, "outage:")))
    try:
        with serve_asgi(build(relay=relay)) as url, httpx.Client(base_url=url, timeout=30) as http:
            cached = http.get("/header/billing")
            assert cached.status_code == 200

            server.stop()
            down = http.get("/header/reports")  # not cached in the process: needs the store
            assert down.status_code == 503
            assert down.json()["error"] == "temporarily_unavailable"
            assert int(down.headers["retry-after"]) > 0
            assert http.get("/plain").status_code == 200  # needs no store
            again = http.get("/header/billing")  # cached in the process: no store needed
            assert again.status_code == 200
            assert again.json()["header"] == cached.json()["header"]
            assert relay.metrics.count("failures", target="reports") >= 1
            assert token_requests(idp, "client_credentials") == 1  # no request without a lock

            server.start()  # same port; the pools reconnect on the next call
            resumed = http.get("/header/reports")
            assert resumed.status_code == 200, resumed.text
            assert http.get("/header/billing").status_code == 200
    finally:
        relay.close()
        server.stop()
