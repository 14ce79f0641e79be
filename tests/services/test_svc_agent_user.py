"""Entra agent identities: their app token and their agent user's token (``user_fic``).

The "app" client is the blueprint of the ``copilot`` and ``scout`` agent identities
(``kind = "entra"``); ``ada`` is copilot's agent user and ``grace`` is scout's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from svc_support import ADA_OID, ADA_UPN, COPILOT_ID, Downstream, caller_token

from authrelay import AuthRelayMiddleware, ConfigurationError
from authrelay.errors import UpstreamError
from authrelay.principal import ANONYMOUS, NO_CREDENTIALS, Credentials, Principal
from authrelay.relay import Relay
from authrelay.testing import FakeClock
from authrelay.testing.provider import IdentityProvider
from authrelay.testing.servers import serve_asgi, serve_wsgi
from authrelay.wsgi import AuthRelayWSGIMiddleware

MakeRelay = Callable[..., tuple[Relay, FakeClock]]
USER_FIC = "user_fic"
GRACE_UPN = "grace@contoso.example"  # scout's agent user, not copilot's


def _claims(idp: IdentityProvider, header: str) -> dict[str, Any]:
    verified = idp.keys.verify(header.removeprefix("Bearer "))
    assert verified is not None
    return verified[1]


def _caller(idp: IdentityProvider, sub: str = "alice") -> tuple[Principal, Credentials]:
    token = caller_token(idp, sub)
    verified = idp.keys.verify(token)
    assert verified is not None
    return Principal(subject=sub, kind="bearer", claims=verified[1]), Credentials(token=token)


def test_agent_user_token_by_upn_or_object_id(
    make_relay: MakeRelay, clean_idp: IdentityProvider
) -> None:
    relay, _ = make_relay()
    client = relay.services.client("billing", ANONYMOUS, NO_CREDENTIALS, asynchronous=False)
    by_upn = client.with_options(actor="copilot", agent_user=ADA_UPN).authorization_header()
    by_oid = client.with_options(actor="copilot", agent_user_id=ADA_OID).authorization_header()
    for header in (by_upn, by_oid):
        claims = _claims(clean_idp, header)
        assert claims["idtyp"] == "user"
        assert claims["sub"] == claims["oid"] == ADA_OID
        assert claims["azp"] == COPILOT_ID
        assert claims["aud"] == "api://billing"
    # Blueprint token, agent identity token, then one user_fic per way of naming the user;
    # the exchange tokens are reused, the agent user's token is cached.
    assert client.with_options(actor="copilot", agent_user=ADA_UPN).authorization_header() == by_upn
    assert clean_idp.counters.count(endpoint="token", grant_type="client_credentials") == 2
    assert clean_idp.counters.count(endpoint="token", grant_type=USER_FIC) == 2


def test_entra_agent_app_token_goes_through_the_blueprint(
    make_relay: MakeRelay, clean_idp: IdentityProvider
) -> None:
    relay, _ = make_relay()
    principal, credentials = _caller(clean_idp)
    billing = relay.services.client("billing", principal, credentials, asynchronous=False)
    claims = _claims(clean_idp, billing.with_options(actor="copilot").authorization_header())
    assert (claims["idtyp"], claims["sub"], claims["azp"]) == ("app", COPILOT_ID, COPILOT_ID)
    obo = relay.services.client("obo", principal, credentials, asynchronous=False)
    own = obo.with_options(actor="copilot", app_token=True).authorization_header()
    assert _claims(clean_idp, own)["sub"] == COPILOT_ID


def test_entra_agent_makes_the_callers_on_behalf_of_request(
    make_relay: MakeRelay, clean_idp: IdentityProvider
) -> None:
    relay, _ = make_relay()
    alice = relay.services.client("obo", *_caller(clean_idp), asynchronous=False)
    bob = relay.services.client("obo", *_caller(clean_idp, "bob"), asynchronous=False)
    mine = _claims(clean_idp, alice.with_options(actor="copilot").authorization_header())
    theirs = _claims(clean_idp, bob.with_options(actor="copilot").authorization_header())
    plain = _claims(clean_idp, alice.authorization_header())
    assert (mine["sub"], mine["client_id"]) == ("alice", COPILOT_ID)
    assert (theirs["sub"], theirs["client_id"]) == ("bob", COPILOT_ID)
    assert (plain["sub"], plain["client_id"]) == ("alice", "app")
    # One blueprint exchange token serves both users' requests.
    assert clean_idp.counters.count(endpoint="token", grant_type="client_credentials") == 1


def test_another_agents_user_is_refused_by_the_provider_as_a_502(
    make_relay: MakeRelay, clean_idp: IdentityProvider
) -> None:
    relay, _ = make_relay()
    client = relay.services.client("billing", ANONYMOUS, NO_CREDENTIALS, asynchronous=False)
    with pytest.raises(UpstreamError) as refused:
        client.with_options(actor="scout", agent_user=ADA_UPN).authorization_header()
    assert refused.value.status == 502
    assert "invalid_grant" in str(refused.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"actor": "copilot", "agent_user": ADA_UPN, "agent_user_id": ADA_OID},
         "mutually exclusive"),
        ({"agent_user": ADA_UPN}, "need actor"),
        ({"agent_user_id": ADA_OID}, "need actor"),
        ({"actor": "planner", "agent_user": ADA_UPN}, "only an Entra agent identity"),
        ({"actor": "copilot", "agent_user_id": "not-a-guid"}, "non-empty GUID"),
        ({"actor": "copilot", "agent_user": " "}, "user principal name"),
        ({"actor": "copilot"}, "never puts in an act claim"),  # orders: token exchange
    ],
)  # fmt: skip
def test_agent_user_options_are_checked_before_any_request(
    make_relay: MakeRelay, clean_idp: IdentityProvider, options: dict[str, Any], message: str
) -> None:
    relay, _ = make_relay()
    principal, credentials = _caller(clean_idp)
    client = relay.services.client("orders", principal, credentials, asynchronous=False)
    with pytest.raises(ValueError, match=message):
        client.with_options(**options)
    assert clean_idp.counters.count(endpoint="token") == 0


def test_entra_agent_settings_are_checked_at_start(make_relay: MakeRelay) -> None:
    with pytest.raises(ConfigurationError) as refused:
        make_relay(services={"orders": {"actor": "copilot"}})
    assert any("Entra agent identity" in p for p in refused.value.problems)
    entra_with_secret = {"client_id": COPILOT_ID, "kind": "entra", "client_secret": "s"}
    with pytest.raises(ConfigurationError) as secret:
        make_relay(agents={"copilot": entra_with_secret})
    assert any("no credential of its own" in p for p in secret.value.problems)


def test_generic_agent_keeps_the_rfc8693_act_path(
    make_relay: MakeRelay, clean_idp: IdentityProvider
) -> None:
    relay, _ = make_relay()
    principal, credentials = _caller(clean_idp)
    client = relay.services.client("orders", principal, credentials, asynchronous=False)
    claims = _claims(clean_idp, client.with_options(actor="planner").authorization_header())
    assert claims["act"] == {"sub": "planner-agent"} and claims["sub"] == "alice"


def _options(query: Any) -> tuple[str, dict[str, Any]]:
    if "id" in query:
        return "billing", {"actor": "copilot", "agent_user_id": query["id"]}
    if "upn" in query:
        return "billing", {"actor": "copilot", "agent_user": query["upn"]}
    return "obo", {"actor": "copilot"}  # the caller's on-behalf-of, as the agent identity


def _asgi(relay: Relay) -> Any:
    async def call(request: Request) -> JSONResponse:
        name, options = _options(request.query_params)
        client = request.state.services[name].with_options(**options)
        answer = await client.get("/whoami")
        return JSONResponse(answer.json())

    app = Starlette(routes=[Route("/agent-user", call)])
    app.add_middleware(AuthRelayMiddleware, relay=relay)
    return app


def _wsgi(relay: Relay) -> Any:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        query = dict(httpx.QueryParams(environ.get("QUERY_STRING", "")))
        name, options = _options(query)
        client = environ["authrelay.services"][name].with_options(**options)
        body = json.dumps(client.get("/whoami").json()).encode()
        start_response("200 OK", [("content-type", "application/json")])
        return [body]

    return AuthRelayWSGIMiddleware(app, relay=relay)


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_routes_call_a_service_as_the_agent_user(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream, shell: str
) -> None:
    relay, _ = make_relay()
    app = _asgi(relay) if shell == "asgi" else _wsgi(relay)
    serve = serve_asgi if shell == "asgi" else serve_wsgi
    token = caller_token(clean_idp, "alice")
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        headers = {"authorization": f"Bearer {token}"}
        by_upn = http.get("/agent-user", params={"upn": ADA_UPN}, headers=headers)
        by_oid = http.get("/agent-user", params={"id": ADA_OID}, headers=headers)
        for_caller = http.get("/agent-user", headers=headers)
    assert by_upn.status_code == by_oid.status_code == for_caller.status_code == 200, by_upn.text
    assert by_upn.json()["sub"] == by_oid.json()["sub"] == ADA_OID
    seen = [entry["claims"] for entry in downstream.seen]
    assert [(c["idtyp"], c["azp"]) for c in seen[:2]] == [("user", COPILOT_ID)] * 2
    assert clean_idp.counters.count(endpoint="token", grant_type=USER_FIC) == 2
    # The caller's on-behalf-of request made as the agent identity: alice, via copilot.
    assert (seen[2]["sub"], seen[2]["client_id"]) == ("alice", COPILOT_ID)
    assert for_caller.json()["aud"] == "api://orders"


def test_st06_shared_store_keeps_agent_users_and_the_agent_apart(
    make_relay: MakeRelay, clean_idp: IdentityProvider, tmp_path: Path
) -> None:
    store = {"url": f"sqlite:///{tmp_path / 'authrelay.db'}"}
    key = "agent-user-tests-secret-key-000000"
    first, _ = make_relay(secret_keys=[key], store=store)
    second, _ = make_relay(secret_keys=[key], store=store)
    one = first.services.client("billing", ANONYMOUS, NO_CREDENTIALS, asynchronous=False)
    two = second.services.client("billing", ANONYMOUS, NO_CREDENTIALS, asynchronous=False)
    ada = one.with_options(actor="copilot", agent_user=ADA_UPN).authorization_header()
    # The other process reads ada's token from the store, but never for the agent itself
    # or for another agent user.
    assert two.with_options(actor="copilot", agent_user=ADA_UPN).authorization_header() == ada
    agent = two.with_options(actor="copilot").authorization_header()
    assert _claims(clean_idp, agent)["idtyp"] == "app"
    with pytest.raises(UpstreamError):
        two.with_options(actor="copilot", agent_user=GRACE_UPN).authorization_header()
    assert clean_idp.counters.count(endpoint="token", grant_type=USER_FIC) == 2
