"""Fixtures shared by the service and sidecar tests: provider, downstream API, relays."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from svc_support import (
    ADA_OID,
    ADA_UPN,
    AGENT_SECRET,
    APP_SECRET,
    COPILOT_ID,
    GRACE_OID,
    SCOUT_ID,
    Downstream,
    service_table,
)

from authrelay import Settings
from authrelay.relay import Relay
from authrelay.testing import FakeClock
from authrelay.testing.models import (
    GRANT_CLIENT_CREDENTIALS,
    GRANT_JWT_BEARER,
    GRANT_TOKEN_EXCHANGE,
    AgentIdentity,
    OAuthClient,
    Resource,
    TestUser,
)
from authrelay.testing.provider import IdentityProvider, serve_identity_provider
from authrelay.testing.servers import serve_asgi


@pytest.fixture(scope="package")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider(
        clients=[
            OAuthClient(
                client_id="app",
                client_secret=APP_SECRET,
                grant_types=(GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE, GRANT_JWT_BEARER),
                app_id_uris=("api://app",),
            ),
            OAuthClient(
                client_id="planner-agent",
                client_secret=AGENT_SECRET,
                grant_types=(GRANT_CLIENT_CREDENTIALS,),
            ),
        ],
        users=[
            TestUser(sub="alice", username="alice"),
            TestUser(sub="bob", username="bob"),
            TestUser(sub=ADA_OID, username=ADA_UPN),
            TestUser(sub=GRACE_OID, username="grace@contoso.example"),
        ],
        agent_identities=[
            AgentIdentity(COPILOT_ID, blueprint="app", user=ADA_OID),
            AgentIdentity(SCOUT_ID, blueprint="app", user=GRACE_OID),
        ],
        resources=[
            Resource("api://app", scopes=("app.use",)),
            Resource("api://orders", scopes=("orders.read", "orders.write")),
            Resource("api://billing", scopes=("billing.read",)),
            Resource("api://agents", scopes=("act",)),
        ],
    )
    with serve_identity_provider(provider):
        yield provider


@pytest.fixture
def clean_idp(idp: IdentityProvider) -> Iterator[IdentityProvider]:
    idp.faults.clear()
    idp.counters.reset()
    yield idp
    idp.faults.clear()


@pytest.fixture(scope="package")
def downstream_server(idp: IdentityProvider) -> Iterator[tuple[Downstream, str]]:
    api = Downstream(idp)
    # A long keep-alive: a loaded machine must not turn idle pooled connections into resets.
    with serve_asgi(api.app, timeout_keep_alive=60) as url:
        yield api, url


@pytest.fixture
def downstream(downstream_server: tuple[Downstream, str]) -> Downstream:
    api = downstream_server[0]
    api.seen.clear()
    api.reject_next = 0
    return api


@pytest.fixture
def downstream_url(downstream_server: tuple[Downstream, str]) -> str:
    return downstream_server[1]


@pytest.fixture
def make_relay(
    idp: IdentityProvider, downstream_url: str
) -> Iterator[Callable[..., tuple[Relay, FakeClock]]]:
    relays: list[Relay] = []

    def make(**overrides: Any) -> tuple[Relay, FakeClock]:
        services = service_table(downstream_url)
        for name, changes in overrides.pop("services", {}).items():
            services[name] = {**services.get(name, {}), **changes}
        data: dict[str, Any] = {
            "dev_mode": True,
            "session": {"dev_insecure_cookies": True},
            "bearer": {"issuer": idp.issuer, "audience": "api://app"},
            "client": {"client_id": "app", "client_secret": APP_SECRET},
            "agents": {
                "planner": {
                    "client_id": "planner-agent",
                    "client_secret": AGENT_SECRET,
                    "audience": "api://agents",
                    "scopes": ["act"],
                },
                "copilot": {"client_id": COPILOT_ID, "kind": "entra"},
                "scout": {"client_id": SCOUT_ID, "kind": "entra"},
            },
            "connectors": {
                "github": {
                    "preset": "github",
                    "client_id": "gh",
                    "client_secret": "gh-secret-canary",
                }
            },
            "services": services,
            "http": {"allow_insecure_loopback": True},
        }
        data.update(overrides)
        clock = FakeClock(time.time())
        relay = Relay(Settings.model_validate(data), clock=clock)
        relays.append(relay)
        return relay, clock

    yield make
    for relay in relays:
        relay.close()
