"""The test provider's Entra Agent ID grants are as strict as Entra's protocol steps.

Blueprint exchange token (``fmi_path``) → the agent identity's exchange token (client
assertion = the blueprint's token) → ``user_fic`` with ``username`` or ``user_id``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from authrelay.testing import IdentityProvider
from authrelay.testing.models import GRANT_CLIENT_CREDENTIALS, AgentIdentity, OAuthClient, Resource
from authrelay.testing.models import TestUser as User

ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FIC = "api://AzureADTokenExchange/.default"
AGENT = "6f1c2a3b-4d5e-4f60-8a9b-0c1d2e3f4a5b"
OTHER = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
ADA = "3e9d8c7b-6a5f-4e3d-9c2b-1a0f9e8d7c6b"
GRACE = "7b6a5f4e-3d2c-4b1a-8f9e-8d7c6b5a4f3e"
BLUEPRINT = ("blueprint", "blueprint-secret-canary")


@pytest.fixture
def idp() -> IdentityProvider:
    return IdentityProvider(
        issuer="https://login.test",
        clients=[
            OAuthClient(
                "blueprint",
                BLUEPRINT[1],
                grant_types=(GRANT_CLIENT_CREDENTIALS,),
                app_id_uris=("api://blueprint",),
            ),
            OAuthClient("stranger", "stranger-secret", grant_types=(GRANT_CLIENT_CREDENTIALS,)),
        ],
        users=[User(ADA, "ada@contoso.example"), User(GRACE, "grace@contoso.example")],
        resources=[Resource("https://graph.test", scopes=("User.Read",))],
        agent_identities=[
            AgentIdentity(AGENT, "blueprint", user=ADA),
            AgentIdentity(OTHER, "blueprint", user=GRACE),
        ],
    )


@pytest.fixture
def http(idp: IdentityProvider) -> Iterator[httpx.Client]:
    with httpx.Client(transport=idp.sync_transport(), base_url=idp.issuer) as client:
        yield client


def _post(http: httpx.Client, auth: Any = None, **form: str) -> httpx.Response:
    return http.post("/token", data=form, auth=auth)


def _t1(http: httpx.Client, agent: str = AGENT) -> str:
    answer = _post(http, BLUEPRINT, grant_type="client_credentials", scope=FIC, fmi_path=agent)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _as_agent(t1: str, agent: str = AGENT, **form: str) -> dict[str, str]:
    return {"client_id": agent, "client_assertion_type": ASSERTION, "client_assertion": t1, **form}


def _t2(http: httpx.Client, t1: str, agent: str = AGENT) -> str:
    answer = _post(http, **_as_agent(t1, agent, grant_type="client_credentials", scope=FIC))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _claims(idp: IdentityProvider, token: str) -> dict[str, Any]:
    verified = idp.keys.verify(token)
    assert verified is not None
    return verified[1]


def test_user_fic_by_upn_or_object_id_gives_the_agent_users_token(
    idp: IdentityProvider, http: httpx.Client
) -> None:
    t1 = _t1(http)
    t2 = _t2(http, t1)
    common = {"grant_type": "user_fic", "scope": "https://graph.test/.default",
              "user_federated_identity_credential": t2}  # fmt: skip
    by_upn = _post(http, **_as_agent(t1, **common, username="ada@contoso.example"))
    by_oid = _post(http, **_as_agent(t1, **common, user_id=ADA))
    for answer in (by_upn, by_oid):
        assert answer.status_code == 200, answer.text
        claims = _claims(idp, answer.json()["access_token"])
        assert claims["idtyp"] == "user"
        assert claims["sub"] == claims["oid"] == ADA
        assert claims["upn"] == "ada@contoso.example"
        assert claims["azp"] == claims["appid"] == AGENT
        assert claims["aud"] == "https://graph.test"
        assert claims["scope"] == "User.Read"


def test_agent_identity_app_token_and_exchange_tokens_are_app_tokens(
    idp: IdentityProvider, http: httpx.Client
) -> None:
    t1 = _t1(http)
    app = _post(http, **_as_agent(t1, grant_type="client_credentials",
                                  scope="https://graph.test/.default"))  # fmt: skip
    claims = _claims(idp, app.json()["access_token"])
    assert (claims["idtyp"], claims["sub"], claims["azp"]) == ("app", AGENT, AGENT)
    assert _claims(idp, t1)["aud"] == "api://AzureADTokenExchange"
    assert _claims(idp, t1)["fmi_path"] == AGENT


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"scope": "https://graph.test/.default", "fmi_path": AGENT}, 400, "invalid_scope"),
        ({"scope": FIC, "fmi_path": "11111111-2222-4333-8444-555555555555"}, 400,
         "unauthorized_client"),
        ({"scope": FIC, "fmi_path": AGENT, "resource": "https://graph.test"}, 400,
         "invalid_request"),
    ],
)  # fmt: skip
def test_blueprint_exchange_token_only_for_its_agents_and_the_exchange_scope(
    http: httpx.Client, form: dict[str, str], status: int, error: str
) -> None:
    answer = _post(http, BLUEPRINT, grant_type="client_credentials", **form)
    assert (answer.status_code, answer.json()["error"]) == (status, error)


def test_another_client_cannot_get_an_exchange_token_for_the_agent(http: httpx.Client) -> None:
    answer = _post(http, ("stranger", "stranger-secret"), grant_type="client_credentials",
                   scope=FIC, fmi_path=AGENT)  # fmt: skip
    assert answer.json()["error"] == "unauthorized_client"


def test_agent_identity_authenticates_with_its_blueprints_token_only(
    http: httpx.Client,
) -> None:
    t1 = _t1(http)
    t2 = _t2(http, t1)
    wrong_agent = _post(http, **_as_agent(t1, OTHER, grant_type="client_credentials", scope=FIC))
    own_token = _post(http, **_as_agent(t2, grant_type="client_credentials", scope=FIC))
    secret = _post(http, client_id=AGENT, client_secret="x", grant_type="client_credentials",
                   scope=FIC)  # fmt: skip
    for answer in (wrong_agent, own_token, secret):
        assert (answer.status_code, answer.json()["error"]) == (401, "invalid_client")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"user_id": ADA}, "invalid_request"),  # with username: mutually exclusive
        ({"username": None}, "invalid_request"),  # neither
        ({"username": "grace@contoso.example"}, "invalid_grant"),  # another agent's user
        ({"username": "nobody@contoso.example"}, "invalid_grant"),
        ({"credential": "t1"}, "invalid_grant"),  # the blueprint's token as the credential
        ({"credential": None}, "invalid_request"),
        ({"scope": FIC}, "invalid_scope"),
        ({"scope": None}, "invalid_request"),
    ],
)
def test_user_fic_refuses_every_mistake(
    http: httpx.Client, change: dict[str, str | None], error: str
) -> None:
    t1 = _t1(http)
    t2 = _t2(http, t1)
    form: dict[str, str | None] = {
        "grant_type": "user_fic",
        "scope": "https://graph.test/.default",
        "user_federated_identity_credential": t2,
        "username": "ada@contoso.example",
    }
    credential = change.pop("credential", "keep")
    if credential != "keep":
        form["user_federated_identity_credential"] = t1 if credential == "t1" else None
    form.update(change)
    sent = {k: v for k, v in form.items() if v is not None}
    answer = _post(http, **_as_agent(t1, **sent))
    assert (answer.status_code, answer.json()["error"]) == (400, error)


def test_user_fic_is_for_agent_identities_only(http: httpx.Client) -> None:
    answer = _post(http, BLUEPRINT, grant_type="user_fic", scope="https://graph.test/.default",
                   username="ada@contoso.example")  # fmt: skip
    assert answer.json()["error"] == "unauthorized_client"


def test_registration_checks_blueprint_and_agent_user() -> None:
    with pytest.raises(ValueError, match="blueprint"):
        IdentityProvider(agent_identities=[AgentIdentity(AGENT, "missing")])
    with pytest.raises(ValueError, match="agent user"):
        IdentityProvider(
            clients=[OAuthClient("blueprint", "s", grant_types=(GRANT_CLIENT_CREDENTIALS,))],
            agent_identities=[AgentIdentity(AGENT, "blueprint", user=ADA)],
        )


def test_agent_on_behalf_of_takes_a_user_token_sent_to_the_blueprint(
    idp: IdentityProvider, http: httpx.Client
) -> None:
    t1 = _t1(http)
    common = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "requested_token_use": "on_behalf_of",
        "scope": "https://graph.test/.default",
    }
    to_blueprint = idp.mint_access_token(sub="alice", audience="api://blueprint", scope="x")
    elsewhere = idp.mint_access_token(sub="alice", audience="api://other", scope="x")
    answer = _post(http, **_as_agent(t1, **common, assertion=to_blueprint))
    refused = _post(http, **_as_agent(t1, **common, assertion=elsewhere))
    claims = _claims(idp, answer.json()["access_token"])
    assert (claims["sub"], claims["client_id"]) == ("alice", AGENT)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
