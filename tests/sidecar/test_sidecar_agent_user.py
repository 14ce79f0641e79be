"""The sidecar's AgentIdentity / AgentUsername / AgentUserId, with Entra's rules.

``copilot`` is an Entra agent identity (``kind = "entra"``) whose agent user is ``ada``;
``planner`` is a generic agent (RFC 8693 ``act``), which has no agent user.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from svc_support import ADA_OID, ADA_UPN, COPILOT_ID, Downstream, caller_token

from authrelay.relay import Relay
from authrelay.sidecar import create_sidecar_app
from authrelay.testing import FakeClock
from authrelay.testing.provider import IdentityProvider
from authrelay.testing.servers import serve_asgi

MakeRelay = Callable[..., tuple[Relay, FakeClock]]


@pytest.fixture
def sidecar(make_relay: MakeRelay) -> Iterator[httpx.Client]:
    relay = make_relay()[0]
    with (
        serve_asgi(create_sidecar_app(relay=relay)) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        yield http


def _claims(idp: IdentityProvider, answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    verified = idp.keys.verify(answer.json()["authorizationHeader"][7:])
    assert verified is not None
    return verified[1]


def test_agent_user_header_by_username_or_user_id(
    sidecar: httpx.Client, clean_idp: IdentityProvider
) -> None:
    unauthenticated = sidecar.get(
        "/AuthorizationHeaderUnauthenticated/billing",
        params={"AgentIdentity": "copilot", "AgentUsername": ADA_UPN},
    )
    # A caller's token does not change whose token it is; the agent by its client id.
    caller = {"authorization": f"Bearer {caller_token(clean_idp, 'alice')}"}
    authenticated = sidecar.get(
        "/AuthorizationHeader/billing",
        params={"agentidentity": COPILOT_ID, "agentuserid": ADA_OID},
        headers=caller,
    )
    for answer in (unauthenticated, authenticated):
        claims = _claims(clean_idp, answer)
        assert (claims["idtyp"], claims["sub"], claims["azp"]) == ("user", ADA_OID, COPILOT_ID)


def test_entra_agent_identity_alone_is_its_app_token(
    sidecar: httpx.Client, clean_idp: IdentityProvider
) -> None:
    answer = sidecar.get("/AuthorizationHeaderUnauthenticated/billing",
                         params={"AgentIdentity": "copilot"})  # fmt: skip
    claims = _claims(clean_idp, answer)
    assert (claims["idtyp"], claims["sub"]) == ("app", COPILOT_ID)


def test_downstream_api_as_the_agent_user(
    sidecar: httpx.Client, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    answer = sidecar.get(
        "/DownstreamApiUnauthenticated/billing",
        params={"AgentIdentity": "copilot", "AgentUsername": ADA_UPN,
                "optionsOverride.RelativePath": "/whoami"},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["statusCode"] == 200
    seen = downstream.seen[-1]["claims"]
    assert (seen["idtyp"], seen["sub"]) == ("user", ADA_OID)


@pytest.mark.parametrize(
    ("path", "params", "status", "detail"),
    [
        ("billing", {"AgentIdentity": "copilot", "AgentUsername": ADA_UPN,
                     "AgentUserId": ADA_OID}, 400, "mutually exclusive"),
        ("billing", {"AgentUserId": ADA_OID}, 400, "need AgentIdentity"),
        ("billing", {"AgentIdentity": "planner", "AgentUsername": ADA_UPN}, 400,
         "only an Entra agent identity"),
        ("billing", {"AgentIdentity": "copilot", "AgentUserId": "0000-0000"}, 400, "GUID"),
        ("billing", {"AgentIdentity": "nobody", "AgentUsername": ADA_UPN}, 400,
         "not a configured agent"),
        ("billing", {"AgentIdentity": "scout", "AgentUsername": ADA_UPN}, 502, "invalid_grant"),
        ("keyed", {"AgentIdentity": "copilot", "AgentUsername": ADA_UPN}, 400,
         "cannot carry an actor"),
    ],
)  # fmt: skip
def test_every_mistake_is_problem_json(
    sidecar: httpx.Client, clean_idp: IdentityProvider,
    path: str, params: dict[str, str], status: int, detail: str,
) -> None:  # fmt: skip
    answer = sidecar.get(f"/AuthorizationHeaderUnauthenticated/{path}", params=params)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["status"] == status
    assert detail in answer.json()["detail"]


def test_entra_agent_on_a_callers_exchange_is_refused(
    sidecar: httpx.Client, clean_idp: IdentityProvider
) -> None:
    caller = {"authorization": f"Bearer {caller_token(clean_idp, 'alice')}"}
    answer = sidecar.get("/AuthorizationHeader/orders", params={"AgentIdentity": "copilot"},
                         headers=caller)  # fmt: skip
    assert answer.status_code == 400
    assert "never puts in an act claim" in answer.json()["detail"]
    assert clean_idp.counters.count(endpoint="token") == 0


def test_agent_identity_on_an_on_behalf_of_service_acts_for_the_caller(
    sidecar: httpx.Client, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    caller = {"authorization": f"Bearer {caller_token(clean_idp, 'alice')}"}
    header = sidecar.get("/AuthorizationHeader/obo", params={"AgentIdentity": COPILOT_ID},
                         headers=caller)  # fmt: skip
    claims = _claims(clean_idp, header)
    assert (claims["sub"], claims["client_id"]) == ("alice", COPILOT_ID)
    called = sidecar.get(
        "/DownstreamApi/obo",
        params={"AgentIdentity": "copilot", "optionsOverride.RelativePath": "whoami"},
        headers=caller,
    )
    assert called.status_code == 200 and called.json()["statusCode"] == 200, called.text
    assert (downstream.seen[-1]["claims"]["sub"], downstream.seen[-1]["claims"]["client_id"]) == (
        "alice", COPILOT_ID,
    )  # fmt: skip
    # The generic agent still cannot ride an on-behalf-of request.
    generic = sidecar.get("/AuthorizationHeader/obo", params={"AgentIdentity": "planner"},
                          headers=caller)  # fmt: skip
    assert generic.status_code == 400 and "cannot carry an actor" in generic.json()["detail"]
