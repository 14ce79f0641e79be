"""Faults at the token endpoint and the downstream, seen through the app over loopback."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx
import pytest
from svc_apps import serve
from svc_support import AGENT_SECRET, API_KEY, APP_SECRET, Downstream, caller_token

from authrelay.relay import Relay
from authrelay.testing import FakeClock
from authrelay.testing.provider import IdentityProvider
from authrelay.testing.servers import free_port

MakeRelay = Callable[..., tuple[Relay, FakeClock]]
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def _get(url: str, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url, headers=headers, timeout=30)


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_cl02_token_endpoint_500_is_retried_then_succeeds(
    shell: str, make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    clean_idp.faults.add("token", status=500, count=2)
    with serve(shell, relay) as url:
        answer = _get(f"{url}/call/billing")
    assert answer.status_code == 200
    assert clean_idp.counters.count(endpoint="token", grant_type="client_credentials") == 3


def test_cl02_persistent_500_gives_502_and_is_not_hammered(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, clock = make_relay()
    clean_idp.faults.add("token", status=500, count=None)
    with serve("asgi", relay) as url:
        answer = _get(f"{url}/call/billing")
        assert answer.status_code == 502
        assert answer.json()["error"] == "upstream_token_error"
        assert answer.json()["service"] == "billing"
        assert clean_idp.counters.count(endpoint="token") == 3  # one try + two retries (CL-02)
        # Inside the negative-cache window: answered at once, no new token request.
        assert _get(f"{url}/call/billing").status_code == 502
        assert clean_idp.counters.count(endpoint="token") == 3
        clean_idp.faults.clear()
        clock.advance(3)  # past negative_cache_ttl (2 s)
        assert _get(f"{url}/call/billing").status_code == 200
    assert clean_idp.counters.count(endpoint="token") == 4


def test_cl02_token_endpoint_503_gives_503_with_retry_after(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    clean_idp.faults.add("token", status=503, retry_after=60, count=None)
    with serve("asgi", relay) as url:
        answer = _get(f"{url}/call/billing")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "60"
    # Retry-After beyond 30 s is not waited for (CL-02): one request only.
    assert clean_idp.counters.count(endpoint="token") == 1


def test_slow_token_endpoint_gives_504(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay(
        http={"allow_insecure_loopback": True, "token_timeout": 0.3},
        services={"billing": {"token_retries": 0}},
    )
    clean_idp.faults.add("token", delay=1.0, count=1)
    with serve("asgi", relay) as url:
        answer = _get(f"{url}/call/billing")
    assert answer.status_code == 504
    assert answer.json()["error"] == "upstream_timeout"
    # Let the provider finish the abandoned request so later tests count cleanly.
    deadline = time.monotonic() + 10
    while clean_idp.counters.count(endpoint="token") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_malformed_token_answer_gives_502(
    shell: str, make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    clean_idp.faults.add("token", malformed=True, count=1)
    with serve(shell, relay) as url:
        answer = _get(f"{url}/call/billing")
    assert answer.status_code == 502
    assert answer.json()["error"] == "upstream_token_error"
    assert clean_idp.counters.count(endpoint="token") == 1
    assert downstream.seen == []


def test_invalid_grant_on_exchange_asks_to_sign_in_again(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    clean_idp.faults.add("token", error="invalid_grant", grant_type=EXCHANGE, count=1)
    with serve("asgi", relay) as url:
        answer = _get(f"{url}/call/orders", caller_token(clean_idp))
    assert answer.status_code == 401
    assert answer.json()["error"] == "connector_authorization_required"
    assert clean_idp.counters.count(endpoint="token", grant_type=EXCHANGE) == 1  # not retried
    assert downstream.seen == []


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_ds03_downstream_401_once_reacquires_and_retries_once(
    shell: str, make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    token = caller_token(clean_idp)
    with serve(shell, relay) as url:
        assert _get(f"{url}/call/orders", token).status_code == 200
        downstream.reject_next = 1
        answer = _get(f"{url}/call/orders", token)
    assert answer.json()["status"] == 200
    assert clean_idp.counters.count(endpoint="token", grant_type=EXCHANGE) == 2
    first, rejected, retried = (e["authorization"] for e in downstream.seen)
    assert first == rejected != retried


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_ds03_401_to_a_streamed_request_is_not_retried_but_drops_the_token(
    shell: str, make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    token = caller_token(clean_idp)
    with serve(shell, relay) as url:
        assert _get(f"{url}/call/orders", token).status_code == 200
        downstream.reject_next = 1
        answer = _get(f"{url}/stream/orders", token)
        assert answer.json()["status"] == 401  # the body could not be sent again
        assert len(downstream.seen) == 2
        assert _get(f"{url}/call/orders", token).json()["status"] == 200
    first, refused, after = (e["authorization"] for e in downstream.seen)
    assert first == refused
    assert after != refused  # the refused token was not kept for the next call


def test_ds03_second_401_is_returned_as_is(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    downstream.reject_next = 100
    with serve("asgi", relay) as url:
        answer = _get(f"{url}/call/orders", caller_token(clean_idp))
    assert answer.json()["status"] == 401
    assert len(downstream.seen) == 2  # one try, one retry, no loop
    assert clean_idp.counters.count(endpoint="token", grant_type=EXCHANGE) == 2


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_provider_down_gives_503_and_other_routes_keep_working(
    shell: str, make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/token"
    relay, _ = make_relay(services={"billing": {"token_endpoint": dead}})
    with serve(shell, relay) as url:
        answer = _get(f"{url}/call/billing")
        assert answer.status_code == 503
        assert answer.json()["error"] == "temporarily_unavailable"
        assert int(answer.headers["retry-after"]) > 0
        assert _get(f"{url}/plain").json() == {"ok": True}
        assert _get(f"{url}/call/keyed").status_code == 200


def test_inv1_no_token_or_secret_in_any_log_record(
    make_relay: MakeRelay,
    clean_idp: IdentityProvider,
    downstream: Downstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    relay, _ = make_relay()
    token = caller_token(clean_idp)
    clean_idp.faults.add("token", status=500, count=1)
    with serve("asgi", relay) as url:
        for service in ("orders", "calendar", "obo", "billing", "passthrough", "keyed"):
            assert _get(f"{url}/call/{service}", token).status_code == 200
        downstream.reject_next = 1
        assert _get(f"{url}/call/orders", token).status_code == 200
        clean_idp.faults.add("token", error="invalid_client", count=1)
        _get(f"{url}/call/obo", caller_token(clean_idp, "bob"))
    secrets = {token, API_KEY, APP_SECRET, AGENT_SECRET}
    secrets |= {e["authorization"][7:] for e in downstream.seen if e["authorization"]}
    assert len(secrets) > 6
    text = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    assert caplog.records
    assert "token_endpoint_error" in text  # the errors were logged, by code only
    for secret in secrets:
        assert secret not in text
