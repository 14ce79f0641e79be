"""The sidecar driven the way the Entra SDK's Python client drives it.

The vendor's client passes service names as an Entra ``appsettings.json`` writes them
(``GET /AuthorizationHeader/Graph`` with ``Authorization: Bearer …``): settings accept
those names, and every lookup (sidecar paths, ``services[...]``) ignores case. An
``AgentIdentity`` on a service whose flow cannot carry an actor is refused with problem
JSON 400, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from svc_support import ADA_OID, ADA_UPN, COPILOT_ID, Downstream, caller_token

from authrelay import ConfigurationError, Settings
from authrelay.principal import NO_CREDENTIALS, Principal
from authrelay.relay import Relay
from authrelay.sidecar import create_sidecar_app
from authrelay.testing import FakeClock
from authrelay.testing.provider import IdentityProvider
from authrelay.testing.servers import serve_asgi

MakeRelay = Callable[..., tuple[Relay, FakeClock]]


class EntraSidecarClient:
    """The shape of the Entra SDK's Python sidecar client: names, params and headers as is."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def get_authorization_header(
        self,
        incoming_token: str,
        service_name: str,
        scopes: list[str] | None = None,
        tenant: str | None = None,
        agent_identity: str | None = None,
        agent_username: str | None = None,
    ) -> httpx.Response:
        params: dict[str, Any] = {}
        if scopes:
            params["optionsOverride.Scopes"] = scopes
        if tenant:
            params["optionsOverride.AcquireTokenOptions.Tenant"] = tenant
        if agent_identity:
            params["AgentIdentity"] = agent_identity
            if agent_username:
                params["AgentUsername"] = agent_username
        return self.http.get(
            f"/AuthorizationHeader/{service_name}",
            params=params,
            headers={"Authorization": incoming_token},
        )

    def call_downstream_api(
        self,
        incoming_token: str,
        service_name: str,
        relative_path: str,
        method: str = "GET",
        body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        params = {"optionsOverride.RelativePath": relative_path}
        if method != "GET":
            params["optionsOverride.HttpMethod"] = method
        headers = {"Authorization": incoming_token}
        return self.http.request(
            method,
            f"/DownstreamApi/{service_name}",
            params=params,
            headers=headers,
            json=body,
        )


@contextmanager
def entra_client(relay: Relay) -> Iterator[EntraSidecarClient]:
    with serve_asgi(create_sidecar_app(relay=relay)) as url:
        client = EntraSidecarClient(url)
        try:
            yield client
        finally:
            client.http.close()


@pytest.fixture
def relay(make_relay: MakeRelay, downstream_url: str) -> Relay:
    base = {"base_url": downstream_url, "allow_http": True}
    graph = {**base, "flow": "on_behalf_of", "scopes": ["api://orders/orders.read"]}
    api = {**base, "flow": "token_exchange", "audience": "api://orders", "scopes": ["orders.read"]}
    return make_relay(services={"Graph": graph, "MyApi": api})[0]


def _claims(idp: IdentityProvider, header: str) -> dict[str, Any]:
    assert header.startswith("Bearer ")
    verified = idp.keys.verify(header[7:])
    assert verified is not None
    return dict(verified[1])


def test_entra_client_gets_headers_for_names_as_entra_writes_them(
    relay: Relay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    incoming = f"Bearer {caller_token(clean_idp, 'alice')}"
    with entra_client(relay) as sidecar:
        graph = sidecar.get_authorization_header(incoming, "Graph")
        api = sidecar.get_authorization_header(
            incoming, "MyApi", scopes=["orders.read", "orders.write"], agent_identity="planner"
        )
        folded = sidecar.get_authorization_header(incoming, "myapi")
        unknown = sidecar.get_authorization_header(incoming, "Mail")
    assert graph.status_code == 200, graph.text
    assert _claims(clean_idp, graph.json()["authorizationHeader"])["sub"] == "alice"
    assert api.status_code == 200, api.text
    acting = _claims(clean_idp, api.json()["authorizationHeader"])
    assert acting["sub"] == "alice"
    assert acting["act"] == {"sub": "planner-agent"}
    assert "orders.write" in acting["scope"].split()
    assert folded.status_code == 200, folded.text
    assert unknown.status_code == 400
    assert unknown.json()["detail"] == "Not able to resolve 'Mail'."


def test_entra_client_calls_a_downstream_api_by_its_entra_name(
    relay: Relay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    incoming = f"Bearer {caller_token(clean_idp, 'bob')}"
    with entra_client(relay) as sidecar:
        answer = sidecar.call_downstream_api(
            incoming, "MyApi", "whoami", method="POST", body={"hello": "world"}
        )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["statusCode"] == 200
    body = httpx.Response(200, content=result["content"]).json()
    assert body["sub"] == "bob"
    assert body["body"] == '{"hello":"world"}'


def test_services_lookup_ignores_case_and_keeps_the_configured_name(relay: Relay) -> None:
    user = Principal(subject="alice", kind="session")
    services = relay.services.for_request(user, NO_CREDENTIALS, asynchronous=False)
    assert "graph" in services and "GRAPH" in services and "Mail" not in services
    assert services["graph"].name == "Graph"
    assert services["MYAPI"].name == "MyApi"
    assert services.myapi.base_url == services["MyApi"].base_url
    assert list(services) == [*list(services)[:-2], "Graph", "MyApi"]


def test_names_differing_only_by_case_are_refused_at_start(tmp_path: Path) -> None:
    settings = tmp_path / "authrelay.toml"
    settings.write_text(
        """
dev_mode = true
[services.Graph]
base_url = "https://graph.example"
flow = "forward"
audience = "api://graph"
[services.graph]
base_url = "https://graph.example"
flow = "forward"
audience = "api://graph"
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_toml(settings)
    problems = " ".join(refused.value.problems)
    assert "'Graph' and 'graph' differ only by case" in problems
    spaced = {"base_url": "https://x", "flow": "forward", "audience": "a"}
    with pytest.raises(ConfigurationError, match="letters, digits"):
        Settings.model_validate({"dev_mode": True, "services": {"My Api": spaced}})


def test_agent_identity_on_a_flow_that_cannot_carry_an_actor_is_a_problem_400(
    relay: Relay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    incoming = f"Bearer {caller_token(clean_idp, 'alice')}"
    with entra_client(relay) as sidecar:
        obo = sidecar.get_authorization_header(incoming, "Graph", agent_identity="planner")
        keyed = sidecar.http.get(
            "/AuthorizationHeaderUnauthenticated/keyed", params={"AgentIdentity": "planner"}
        )
        called = sidecar.http.get(
            "/DownstreamApi/passthrough",
            params={"optionsOverride.RelativePath": "whoami", "AgentIdentity": "planner"},
            headers={"Authorization": incoming},
        )
        # An agent user's token is the Entra agent identity's user_fic token, whatever the
        # service's flow; a generic agent has no agent user.
        agent_user = sidecar.get_authorization_header(
            incoming, "Graph", agent_identity="copilot", agent_username=ADA_UPN
        )
        no_user = sidecar.get_authorization_header(
            incoming, "Graph", agent_identity="planner", agent_username=ADA_UPN
        )
    for refused in (obo, keyed, called):
        assert refused.status_code == 400, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "cannot carry an actor" in refused.json()["detail"]
    assert downstream.seen == []
    assert agent_user.status_code == 200, agent_user.text
    own = _claims(clean_idp, agent_user.json()["authorizationHeader"])
    assert (own["idtyp"], own["sub"], own["azp"]) == ("user", ADA_OID, COPILOT_ID)
    assert no_user.status_code == 400 and "no agent user" in no_user.json()["detail"]
