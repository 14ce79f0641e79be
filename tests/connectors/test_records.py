"""Connector records that persist (issue 18 §4): read back at start, seen by every worker,
settings as the base, ``target`` immutable, Logto-shaped import and export."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from connector_helpers import app_settings

from authrelay import Relay
from authrelay.connectors import RecordRefused, TargetImmutable, export_logto, import_logto
from authrelay.testing import FakeClock
from authrelay.wsgi import AuthRelayWSGIMiddleware

BASE = "https://app.example"
ISSUER = "https://idp.example"
OIDC_LOGO = "connectors/logos/oidc.svg"
LISTED_LOGO = "/auth/connectors/idp/logo"  # the packaged logo, as /auth/connectors lists it


def _relay(store: str, *, clock: Callable[[], float] = time.time, **extra: Any) -> Relay:
    return Relay(app_settings(ISSUER, BASE, store={"url": store}, **extra), clock=clock)


def _listed(relay: Relay) -> list[dict[str, Any]]:
    """``GET /auth/connectors`` through the WSGI shell, in process."""

    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("204 No Content", [])
        return []

    transport = httpx.WSGITransport(app=AuthRelayWSGIMiddleware(app, relay=relay))
    with httpx.Client(transport=transport, base_url=BASE) as client:
        answer = client.get("/auth/connectors")
    assert answer.status_code == 200
    return list(answer.json()["connectors"])


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'relay.db'}"


@pytest.fixture
def relays() -> Iterator[list[Relay]]:
    made: list[Relay] = []
    yield made
    for relay in made:
        relay.close()


def test_records_written_by_update_are_read_back_at_start(db: str, relays: list[Relay]) -> None:
    first = _relay(db)
    relays.append(first)
    first.sync_driver.run(
        first.connectors.update(
            "idp", {"scopes": ["openid", "email"]}, metadata={"logo": "https://cdn.example/a.svg"}
        )
    )
    first.close()
    relays.remove(first)

    again = _relay(db)
    relays.append(again)
    assert again.connectors.get("idp").metadata.logo == OIDC_LOGO  # type: ignore[union-attr]  # no I/O yet
    (item,) = _listed(again)  # the first request reads the records back
    assert item["logo"] == "https://cdn.example/a.svg"
    assert again.connectors.get("idp").scopes == ("openid", "email")  # type: ignore[union-attr]


def test_settings_stay_the_base_under_a_record(db: str, relays: list[Relay]) -> None:
    first = _relay(db)
    relays.append(first)
    first.sync_driver.run(first.connectors.update("idp", {"scopes": ["openid"]}))
    # The operator edits the settings file; the record overrides only what it set.
    later = _relay(db, connector={"client_id": "rotated-client"})
    relays.append(later)
    later.sync_driver.run(later.connectors.refresh())
    connector = later.connectors.get("idp")
    assert connector is not None
    assert connector.client_id == "rotated-client" and connector.scopes == ("openid",)
    # null drops an override: the settings value applies again
    later.sync_driver.run(later.connectors.update("idp", {"scopes": None}))
    assert later.connectors.get("idp").scopes == ("openid", "profile", "email")  # type: ignore[union-attr]


def test_a_change_on_one_worker_is_seen_by_another_on_sqlite_within_the_interval(
    db: str, relays: list[Relay]
) -> None:
    clock = FakeClock(1_700_000_000.0)
    one, two = _relay(db, clock=clock), _relay(db, clock=clock)
    relays.extend([one, two])
    assert _listed(two)[0]["logo"] == LISTED_LOGO
    one.sync_driver.run(one.connectors.update("idp", metadata={"logo": "https://cdn.example/b"}))
    assert _listed(two)[0]["logo"] == LISTED_LOGO  # trusted for admin.refresh_interval (5 s)
    clock.advance(5)
    assert _listed(two)[0]["logo"] == "https://cdn.example/b"
    one.sync_driver.run(one.connectors.update("idp", enabled=False))
    clock.advance(5)
    assert _listed(two) == []


@pytest.mark.redis
def test_a_change_on_one_worker_is_heard_by_another_on_redis(relays: list[Relay]) -> None:
    from authrelay._crypto import random_token

    store = {"url": "redis://127.0.0.1:6379/0", "key_prefix": f"t-{random_token(6)}:"}
    clock = FakeClock(1_700_000_000.0)  # never moves: only invalidation can tell ``two``
    one = Relay(app_settings(ISSUER, BASE, store=store), clock=clock)
    two = Relay(app_settings(ISSUER, BASE, store=store), clock=clock)
    relays.extend([one, two])
    assert _listed(one)[0]["logo"] == LISTED_LOGO and _listed(two)[0]["logo"] == LISTED_LOGO
    assert two.backend.hub.connected.wait(10)  # type: ignore[attr-defined]
    one.sync_driver.run(one.connectors.update("idp", metadata={"logo": "https://cdn.example/r"}))
    deadline = time.monotonic() + 10
    while _listed(two)[0]["logo"] != "https://cdn.example/r" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _listed(two)[0]["logo"] == "https://cdn.example/r"
    for key in one.backend.keys(store["key_prefix"]):
        one.backend.delete(key)


def test_concurrent_changes_from_two_workers_are_both_kept(db: str, relays: list[Relay]) -> None:
    one, two = _relay(db), _relay(db)
    relays.extend([one, two])
    one.sync_driver.run(one.connectors.update("idp", {"scopes": ["openid"]}))
    two.sync_driver.run(two.connectors.update("idp", metadata={"logo": "https://cdn.example/c"}))
    saved = one.sync_driver.run(one.connectors.store.load_connector_records())
    assert saved["idp"]["config"] == {"scopes": ["openid"]}
    assert saved["idp"]["metadata"] == {"logo": "https://cdn.example/c"}


def test_target_is_immutable_once_set(db: str, relays: list[Relay]) -> None:
    relay = _relay(db)
    relays.append(relay)
    with pytest.raises(TargetImmutable) as info:
        relay.sync_driver.run(relay.connectors.update("idp", metadata={"target": "elsewhere"}))
    assert info.value.status == 409
    with pytest.raises(TargetImmutable):
        relay.sync_driver.run(relay.connectors.update("idp", {"target": "elsewhere"}))
    assert relay.sync_driver.run(relay.connectors.store.load_connector_records()) == {}


def test_a_stored_target_that_no_longer_matches_is_ignored(
    db: str, relays: list[Relay], caplog: pytest.LogCaptureFixture
) -> None:
    relay = _relay(db)
    relays.append(relay)
    record = relay.sync_driver.run(relay.connectors.update("idp", {"scopes": ["openid"]}))
    forged = {**record.to_dict(), "metadata": {"target": "elsewhere"}}
    relay.sync_driver.run(relay.connectors.store.save_connector_record("idp", forged))
    fresh = _relay(db)
    relays.append(fresh)
    with caplog.at_level(logging.WARNING, logger="authrelay.connectors"):
        fresh.sync_driver.run(fresh.connectors.refresh())
    connector = fresh.connectors.get("idp")
    assert connector is not None and connector.target == "idp" and connector.scopes == ("openid",)
    assert "connector_record_target_ignored connector=idp" in caplog.text


def test_presets_take_no_metadata_overrides_as_in_logto(db: str, relays: list[Relay]) -> None:
    github = {"preset": "github", "client_id": "gh", "client_secret": "gh-secret"}
    relay = Relay(app_settings(ISSUER, BASE, store={"url": db}, connectors={"gh": github}))
    relays.append(relay)
    with pytest.raises(RecordRefused) as info:
        relay.sync_driver.run(relay.connectors.update("gh", metadata={"logo": "x.svg"}))
    assert "only standard (oauth2 / oidc) connectors" in info.value.problems[0]
    relay.sync_driver.run(relay.connectors.update("gh", {"client_id": "gh-2"}))  # config is fine
    assert relay.connectors.get("gh").client_id == "gh-2"  # type: ignore[union-attr]


def test_unknown_connector_is_refused(db: str, relays: list[Relay]) -> None:
    relay = _relay(db)
    relays.append(relay)
    with pytest.raises(RecordRefused, match="not a configured connector"):
        relay.sync_driver.run(relay.connectors.update("nope", {"client_id": "x"}))


# -- Logto-shaped JSON ----------------------------------------------------------------


def test_export_is_logto_shaped_and_leaves_secrets_out(db: str, relays: list[Relay]) -> None:
    relay = _relay(db, connector={"authorize_params": {"prompt": "login"}})
    relays.append(relay)
    relay.sync_driver.run(
        relay.connectors.update(
            "idp", {"scopes": ["openid", "email"]}, metadata={"logo_dark": "https://cdn/d.svg"}
        )
    )
    (item,) = export_logto(relay.connectors)
    for member in (
        "id", "connectorId", "syncProfile", "config", "metadata", "createdAt", "target",
        "platform", "type", "name", "description", "logo", "logoDark", "readme",
        "configTemplate", "isStandard",
    ):  # fmt: skip
        assert member in item
    assert item["connectorId"] == "oidc" and item["isStandard"] is True
    assert item["metadata"] == {"logoDark": "https://cdn/d.svg"}
    assert item["logoDark"] == "https://cdn/d.svg"
    config = item["config"]
    assert config["clientId"] == "test-client" and config["scope"] == "openid email"
    assert config["customConfig"] == {"prompt": "login"}
    assert "clientSecret" not in config and "test-secret" not in json.dumps(item)
    (with_secret,) = export_logto(relay.connectors, include_secrets=True)
    assert with_secret["config"]["clientSecret"] == "test-secret"
    assert "test-secret" not in repr(relay.connectors.records["idp"])


def test_import_round_trips_into_another_deployment(
    db: str, tmp_path: Path, relays: list[Relay]
) -> None:
    source = _relay(db)
    relays.append(source)
    source.sync_driver.run(
        source.connectors.update(
            "idp",
            {"client_secret": "rotated-secret", "scopes": ["openid"]},
            metadata={"name": {"en": "Company SSO"}},
            sync_profile=True,
            enabled=False,
        )
    )
    exported = json.loads(json.dumps(export_logto(source.connectors, include_secrets=True)))
    target = _relay(f"sqlite:///{tmp_path / 'other.db'}")
    relays.append(target)
    target.sync_driver.run(import_logto(target.connectors, exported))
    connector = target.connectors.get("idp")
    assert connector is not None
    assert connector.settings.client_secret.get_secret_value() == "rotated-secret"  # type: ignore[union-attr]
    assert connector.scopes == ("openid",) and connector.settings.sync_profile is True
    assert connector.metadata.name == {"en": "Company SSO"}
    assert target.connectors.disabled == {"idp"}


def test_import_takes_logto_json_from_logto(db: str, relays: list[Relay]) -> None:
    relay = _relay(db)
    relays.append(relay)
    from_logto = {
        "id": "a1b2c3d4e5f6",
        "connectorId": "oidc",
        "target": "idp",
        "platform": "web",
        "syncProfile": True,
        "metadata": {"logo": "https://cdn.example/l.svg", "logoDark": None},
        "config": {
            "clientId": "from-logto",
            "clientSecret": "logto-secret",
            "scope": "openid profile",
            "customConfig": {"prompt": "consent"},
            "authRequestOptionalConfig": {},
            "idTokenVerificationConfig": {"jwksUri": "https://idp.example/jwks"},
        },
    }
    relay.sync_driver.run(import_logto(relay.connectors, [from_logto]))
    connector = relay.connectors.get("idp")
    assert connector is not None
    assert connector.client_id == "from-logto" and connector.scopes == ("openid", "profile")
    assert connector.settings.authorize_params == {"prompt": "consent"}
    assert connector.settings.jwks_uri == "https://idp.example/jwks"
    assert connector.metadata.logo == "https://cdn.example/l.svg"


def test_import_refuses_bad_items_and_saves_nothing(db: str, relays: list[Relay]) -> None:
    relay = _relay(db)
    relays.append(relay)
    good = {"connectorId": "oidc", "target": "idp", "platform": "web", "config": {"clientId": "x"}}
    with pytest.raises(RecordRefused) as info:
        relay.sync_driver.run(
            import_logto(
                relay.connectors,
                [
                    good,
                    {**good, "connectorId": "github"},
                    {**good, "target": "nowhere"},
                    {**good, "config": {"clientSecret": None, "tokenEndpointAuthMethod": "x"}},
                    "not an object",
                ],
            )
        )
    problems = info.value.problems
    assert any(p.startswith("items[1].connectorId") for p in problems)
    assert any(
        p.startswith("items[2]: no configured connector has target 'nowhere'") for p in problems
    )
    assert any("token_endpoint_auth_method" in p for p in problems)
    assert any(p.startswith("items[4]: each item must be a JSON object") for p in problems)
    assert relay.sync_driver.run(relay.connectors.store.load_connector_records()) == {}


def test_an_unreadable_store_keeps_the_connectors_listed(
    db: str, relays: list[Relay], caplog: pytest.LogCaptureFixture
) -> None:
    relay = _relay(db)
    relays.append(relay)
    relay.backend.close()  # every store operation now fails (TokenStoreUnavailable)
    with caplog.at_level(logging.WARNING, logger="authrelay.connectors"):
        (item,) = _listed(relay)
    assert item["id"] == "idp"
    assert "connector_records_unreadable" in caplog.text


def test_asgi_lifespan_startup_reads_the_records_back(db: str, relays: list[Relay]) -> None:
    from connector_helpers import echo_app

    from authrelay import AuthRelayMiddleware
    from authrelay.testing import serve_asgi

    first = _relay(db)
    relays.append(first)
    first.sync_driver.run(first.connectors.update("idp", metadata={"logo": "https://cdn/s.svg"}))
    again = _relay(db)
    relays.append(again)
    with serve_asgi(AuthRelayMiddleware(echo_app, relay=again)):
        # No request yet: the lifespan startup has read the record.
        assert again.connectors.get("idp").metadata.logo == "https://cdn/s.svg"  # type: ignore[union-attr]
