"""TX-06: a token carrying ``act`` exposes its actor chain read-only on the principal, and
only top-level claims authorize (RFC 8693 §4.1: earlier actors are informational)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any

import httpx
import pytest
from sec_helpers import base_settings, serve_app

from authrelay import Principal, Settings
from authrelay.testing import IdentityProvider, serve_identity_provider
from authrelay.testing.models import (
    GRANT_CLIENT_CREDENTIALS,
    GRANT_TOKEN_EXCHANGE,
    OAuthClient,
    Resource,
    TestUser,
)

EXCHANGE = GRANT_TOKEN_EXCHANGE
ACCESS = "urn:ietf:params:oauth:token-type:access_token"


@pytest.fixture
def provider() -> Iterator[IdentityProvider]:
    idp = IdentityProvider(
        clients=[
            OAuthClient("app", "app-secret", grant_types=(GRANT_TOKEN_EXCHANGE,)),
            OAuthClient("planner-agent", "p-secret", grant_types=(GRANT_CLIENT_CREDENTIALS,)),
            OAuthClient("scheduler-agent", "s-secret", grant_types=(GRANT_CLIENT_CREDENTIALS,)),
        ],
        users=[TestUser("alice", "alice")],
        resources=[
            Resource("api://app", ("app.use", "app.admin")),
            Resource("api://agents", ("act",)),
        ],
    )
    with serve_identity_provider(idp):
        yield idp


def _post(idp: IdentityProvider, auth: tuple[str, str], data: dict[str, str]) -> dict[str, Any]:
    answer = httpx.post(f"{idp.issuer}/token", data=data, auth=auth)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _actor(idp: IdentityProvider, client: str, secret: str) -> str:
    body = _post(
        idp, (client, secret), {"grant_type": "client_credentials", "resource": "api://agents"}
    )
    return str(body["access_token"])


def _exchange(idp: IdentityProvider, subject: str, actor: str) -> str:
    body = _post(
        idp,
        ("app", "app-secret"),
        {
            "grant_type": EXCHANGE,
            "subject_token": subject,
            "subject_token_type": ACCESS,
            "actor_token": actor,
            "actor_token_type": ACCESS,
            "audience": "api://app",
            "scope": "app.use",
        },
    )
    return str(body["access_token"])


def _bearer_settings(idp: IdentityProvider, **bearer: Any) -> Callable[[str], Settings]:
    return lambda base: base_settings(
        base, {}, bearer={"issuer": idp.issuer, "audience": "api://app", **bearer}
    )


def test_tx06_exchanged_token_exposes_the_nested_actor_chain(
    provider: IdentityProvider, shell: str
) -> None:
    idp = provider
    user = idp.mint_access_token(
        sub="alice", audience="api://app", scope="app.use", client_id="web"
    )
    once = _exchange(idp, user, _actor(idp, "planner-agent", "p-secret"))
    twice = _exchange(idp, once, _actor(idp, "scheduler-agent", "s-secret"))
    with serve_app(_bearer_settings(idp), shell=shell) as app:
        direct = app.get("/who", headers={"authorization": f"Bearer {user}"}).json()
        one = app.get("/who", headers={"authorization": f"Bearer {once}"}).json()
        two = app.get("/who", headers={"authorization": f"Bearer {twice}"}).json()
    assert direct["actor_chain"] == []
    assert one["actor_chain"] == ["planner-agent"]
    # The current actor first, then the earlier one it acts through.
    assert two["actor_chain"] == ["scheduler-agent", "planner-agent"]
    # The subject is still the user, never an actor.
    assert {direct["subject"], one["subject"], two["subject"]} == {"alice"}
    assert two["kind"] == "bearer"


def test_tx06_chain_is_read_only() -> None:
    claims = {"sub": "alice", "act": {"sub": "agent-2", "act": {"sub": "agent-1"}}}
    principal = Principal(subject="alice", kind="bearer", claims=MappingProxyType(claims))
    chain = principal.actor_chain
    assert chain == ("agent-2", "agent-1")
    assert isinstance(chain, tuple)
    with pytest.raises(TypeError):
        principal.claims["act"] = {"sub": "intruder"}  # type: ignore[index]
    with pytest.raises((AttributeError, TypeError)):  # frozen, slotted dataclass
        principal.actor_chain = ("x",)  # type: ignore[misc]


def test_tx06_chain_names_only_actors_that_say_who_they_are() -> None:
    claims = {"act": {"client_id": "agent-2", "act": {"scope": "x", "act": {"sub": "ghost"}}}}
    principal = Principal(subject="alice", kind="bearer", claims=MappingProxyType(claims))
    assert principal.actor_chain == ("agent-2",)
    weird = Principal(subject="alice", kind="bearer", claims={"act": {"sub": 7}})
    assert weird.actor_chain == ()


def test_tx06_nested_act_never_authorizes(provider: IdentityProvider, shell: str) -> None:
    idp = provider
    # An earlier actor held app.admin; the token itself only grants app.use.
    token = idp.mint_access_token(
        sub="alice",
        audience="api://app",
        scope="app.use",
        client_id="app",
        claims={
            "act": {
                "sub": "agent-2",
                "act": {"sub": "root", "scope": "app.admin", "scp": ["app.admin"]},
            }
        },
    )
    with serve_app(_bearer_settings(idp, required_scopes=["app.admin"]), shell=shell) as app:
        refused = app.get(
            "/admin", headers={"authorization": f"Bearer {token}", "accept": "application/json"}
        )
    assert refused.status_code == 403
    assert refused.json()["error"] == "insufficient_scope"
    with serve_app(_bearer_settings(idp, required_scopes=["app.use"]), shell=shell) as app:
        allowed = app.get("/who", headers={"authorization": f"Bearer {token}"}).json()
    assert allowed["subject"] == "alice"  # never "root" nor "agent-2"
    assert allowed["actor_chain"] == ["agent-2", "root"]
