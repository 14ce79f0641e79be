"""An asked-for agent is carried or refused, never silently dropped.

A token exchange sends the agent as RFC 8693 ``actor_token`` (the token gets ``act``) and
an app token can be the agent's own; every other flow would ignore an actor, so
``with_options(actor=...)`` there raises ``ValueError`` and ``actor = "..."`` in its
settings is refused at start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from svc_support import Downstream, caller_token

from authrelay import ConfigurationError
from authrelay.principal import Credentials, Principal
from authrelay.relay import Relay
from authrelay.testing import FakeClock
from authrelay.testing.provider import IdentityProvider

MakeRelay = Callable[..., tuple[Relay, FakeClock]]


def _caller(idp: IdentityProvider, sub: str) -> tuple[Principal, Credentials]:
    token = caller_token(idp, sub)
    claims = idp.keys.verify(token)
    assert claims is not None
    principal = Principal(subject=sub, kind="bearer", claims=claims[1])
    return principal, Credentials(token=token, scopes=frozenset({"app.use"}))


def _client(relay: Relay, idp: IdentityProvider, name: str) -> Any:
    principal, credentials = _caller(idp, "alice")
    return relay.services.client(name, principal, credentials, asynchronous=False)


@pytest.mark.parametrize("name", ["obo", "passthrough", "keyed", "github"])
def test_tx_actor_on_a_flow_that_cannot_carry_one_is_refused(
    make_relay: MakeRelay, clean_idp: IdentityProvider, name: str
) -> None:
    relay, _ = make_relay()
    client = _client(relay, clean_idp, name)
    with pytest.raises(ValueError, match="cannot carry an actor") as refused:
        client.with_options(actor="planner")
    assert name in str(refused.value)
    assert clean_idp.counters.count(endpoint="token") == 0


def test_tx_actor_is_carried_by_an_exchange_and_as_an_app_token(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    exchanged = _client(relay, clean_idp, "orders").with_options(actor="planner")
    claims = clean_idp.keys.verify(exchanged.authorization_header()[7:])
    assert claims is not None and claims[1]["act"] == {"sub": "planner-agent"}
    # An app token asked for in the same call may be the agent's own, whatever the flow.
    own = _client(relay, clean_idp, "obo").with_options(actor="planner", app_token=True)
    own_claims = clean_idp.keys.verify(own.authorization_header()[7:])
    assert own_claims is not None and own_claims[1]["client_id"] == "planner-agent"
    billing = _client(relay, clean_idp, "billing").with_options(actor="planner")
    billing_claims = clean_idp.keys.verify(billing.authorization_header()[7:])
    assert billing_claims is not None and billing_claims[1]["client_id"] == "planner-agent"


@pytest.mark.parametrize("name", ["obo", "passthrough", "keyed", "github", "billing"])
def test_tx_actor_setting_on_a_flow_that_cannot_carry_one_is_refused_at_start(
    make_relay: MakeRelay, name: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        make_relay(services={name: {"actor": "planner"}})
    problems = refused.value.problems
    assert any(p.startswith(f"services.{name}.actor: ") for p in problems), problems
    assert any("cannot carry an actor" in p for p in problems), problems
