"""Connector counters in ``relay.metrics``, read through ``GET /auth/stats``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from connector_helpers import Running, run_app

from authrelay import Principal, ReauthorizationRequired
from authrelay.testing import FakeClock, IdentityProvider, serve_identity_provider

ALICE = Principal(subject="idp|alice", kind="session", connector="idp")


def counter(stats: dict[str, Any], name: str, flow: str = "connector") -> int:
    return sum(
        c["value"]
        for c in stats["counters"]
        if c["name"] == name and c["target"] == "idp" and c["flow"] == flow
    )


def refresh(app: Running) -> str:
    source = app.relay.connectors.tokens
    token = app.relay.sync_driver.run(source.user_token(ALICE, "idp", (), force_refresh=True))
    return token.value


def test_connector_counters_are_served_by_stats_without_subjects_or_tokens(
    make_identity_provider: Callable[..., IdentityProvider], shell: str
) -> None:
    clock = FakeClock(1_700_000_000.0)
    idp = make_identity_provider(issuer=None, clock=clock)
    with (
        serve_identity_provider(idp),
        run_app(idp, wsgi=shell == "wsgi", clock=clock, routes={"stats": True}) as app,
    ):
        callback = app.authorize()
        assert app.client.get(callback).status_code == 303
        assert app.client.get(callback).status_code == 400  # replayed state
        access = refresh(app)
        refresh_token = idp.issued_refresh_tokens("alice")[-1]
        idp.faults.add("token", error="invalid_grant", grant_type="refresh_token")
        with pytest.raises(ReauthorizationRequired):
            refresh(app)
        response = app.client.get(f"{app.base}/auth/stats")
    assert response.status_code == 200
    stats = response.json()
    assert counter(stats, "sign_ins") == 1
    assert counter(stats, "refreshes") == 1
    assert counter(stats, "token_endpoint_calls") == 3  # code, refresh, refused refresh
    assert counter(stats, "failures", "invalid_state") == 1
    assert counter(stats, "failures", "connector_authorization_required") == 1
    latency = [x for x in stats["latency"] if x["name"] == "refresh" and x["target"] == "idp"]
    assert len(latency) == 1 and latency[0]["count"] == 1
    text = response.text
    assert "alice" not in text  # INV-1: no subject as a label
    assert access not in text and refresh_token not in text
