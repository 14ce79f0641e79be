"""Every flow end to end: test provider and downstream API on loopback, app under both shells."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from svc_apps import serve
from svc_support import API_KEY, Downstream, caller_token

from authrelay.relay import Relay
from authrelay.testing import FakeClock
from authrelay.testing.provider import IdentityProvider

pytestmark = pytest.mark.parametrize("shell", ["asgi", "wsgi"])

MakeRelay = Callable[..., tuple[Relay, FakeClock]]


def _get(url: str, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url, headers=headers, timeout=20)


def test_tx01_token_exchange_for_the_caller(
    shell: str, make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    with serve(shell, relay) as url:
        for sub in ("alice", "bob"):
            answer = _get(f"{url}/call/orders", caller_token(clean_idp, sub))
            assert answer.status_code == 200, answer.text
            body = answer.json()["body"]
            assert body["sub"] == sub
            assert body["aud"] in ("api://orders", ["api://orders"])
            assert body["act"] == {"sub": "app"}
    assert (
        clean_idp.counters.count(
            endpoint="token", grant_type="urn:ietf:params:oauth:grant-type:token-exchange"
        )
        == 2
    )
    assert all(entry["cookie"] is None for entry in downstream.seen)


def test_tx01_exchange_with_an_agent_as_actor(
    shell: str, make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    with serve(shell, relay) as url:
        for _ in range(3):
            answer = _get(f"{url}/call/calendar", caller_token(clean_idp, "alice"))
            assert answer.status_code == 200, answer.text
            assert answer.json()["body"]["act"] == {"sub": "planner-agent"}
            assert answer.json()["body"]["sub"] == "alice"
    # The agent's own token is fetched once and reused as actor_token.
    assert clean_idp.counters.count(grant_type="client_credentials", client_id="planner-agent") == 1


def test_on_behalf_of(
    shell: str, make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    with serve(shell, relay) as url:
        answer = _get(f"{url}/call/obo", caller_token(clean_idp, "bob"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["body"]["sub"] == "bob"
    assert "orders.read" in answer.json()["body"]["scope"]
    assert (
        clean_idp.counters.count(
            endpoint="token", grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer"
        )
        == 1
    )


def test_cl01_client_credentials_shared_by_callers(
    shell: str, make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    with serve(shell, relay) as url:
        for sub in ("alice", "bob", "alice"):
            answer = _get(f"{url}/call/billing", caller_token(clean_idp, sub))
            assert answer.status_code == 200
            assert answer.json()["body"]["client_id"] == "app"
        anonymous = _get(f"{url}/call/billing")
        assert anonymous.status_code == 200
    assert clean_idp.counters.count(endpoint="token", grant_type="client_credentials") == 1


def test_fw01_forward_passes_the_callers_token(
    shell: str, make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    token = caller_token(clean_idp, "alice")
    with serve(shell, relay) as url:
        answer = _get(f"{url}/call/passthrough", token)
    assert answer.status_code == 200
    assert downstream.seen[-1]["authorization"] == f"Bearer {token}"
    assert clean_idp.counters.count(endpoint="token") == 0


def test_fw01_forward_refused_when_audience_differs(
    shell: str, make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay(services={"passthrough": {"audience": "api://elsewhere"}})
    with serve(shell, relay) as url:
        answer = _get(f"{url}/call/passthrough", caller_token(clean_idp, "alice"))
    assert answer.status_code == 502
    assert answer.json()["error"] == "upstream_token_error"
    assert downstream.seen == []


def test_sk01_api_key_in_its_header(
    shell: str, make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    with serve(shell, relay) as url:
        answer = _get(f"{url}/call/keyed")
    assert answer.status_code == 200
    assert downstream.seen[-1]["x_api_key"] == API_KEY
    assert downstream.seen[-1]["authorization"] == ""
    assert API_KEY not in repr(relay.services.runtimes["keyed"])


def test_connector_without_a_source_asks_to_connect(
    shell: str, make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    relay.services.user_tokens = None
    with serve(shell, relay) as url:
        answer = _get(f"{url}/call/github", caller_token(clean_idp, "alice"))
    assert answer.status_code == 401
    assert answer.json()["error"] == "connector_authorization_required"
    assert answer.json()["connector"] == "github"
    assert answer.json()["login_url"] == "/auth/github/login"
    assert downstream.seen == []


def test_connector_uses_the_registered_user_token_source(
    shell: str, make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    from authrelay.tokens import AccessToken

    relay, clock = make_relay()
    calls: list[tuple[str | None, str, bool]] = []

    class Source:
        def user_token(
            self, principal: Any, connector: str, scopes: tuple[str, ...], *, force_refresh: bool
        ) -> Any:
            calls.append((principal.claims.get("sub"), connector, force_refresh))
            yield from ()
            token = clean_idp.mint_access_token(
                sub=principal.claims["sub"], audience="api://orders"
            )
            return AccessToken(token, clock() + 300)

    relay.services.user_tokens = Source()
    with serve(shell, relay) as url:
        for _ in range(2):
            answer = _get(f"{url}/call/github", caller_token(clean_idp, "alice"))
            assert answer.status_code == 200, answer.text
            assert answer.json()["body"]["sub"] == "alice"
    assert calls == [("alice", "github", False)]
