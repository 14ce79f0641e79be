"""Downstream client hygiene (DS-01, DS-02, SK-01) and the Services contract."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from svc_support import API_KEY, Downstream

from authrelay.errors import DownstreamClientError, DownstreamServerError, UnknownService
from authrelay.principal import ANONYMOUS, NO_CREDENTIALS
from authrelay.relay import Relay
from authrelay.testing import FakeClock
from authrelay.testing.provider import IdentityProvider

MakeRelay = Callable[..., tuple[Relay, FakeClock]]


def _other_origin(url: str) -> str:
    return url.replace("127.0.0.1", "localhost")


def _client(relay: Relay, name: str, asynchronous: bool = False) -> Any:
    return relay.services.for_request(ANONYMOUS, NO_CREDENTIALS, asynchronous=asynchronous)[name]


def test_ds01_no_credential_for_another_origin(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream, downstream_url: str
) -> None:
    relay, _ = make_relay()
    billing = _client(relay, "billing")
    assert billing.get(f"{_other_origin(downstream_url)}/whoami").status_code == 200
    assert downstream.seen[-1]["authorization"] == ""
    assert clean_idp.counters.count(endpoint="token") == 0  # nothing acquired for it
    assert billing.get(f"{downstream_url}/whoami").status_code == 200
    assert downstream.seen[-1]["authorization"].startswith("Bearer ")


@pytest.mark.parametrize("service", ["billing", "keyed"])
def test_ds01_credential_stripped_on_cross_origin_redirect(
    service: str,
    make_relay: MakeRelay,
    clean_idp: IdentityProvider,
    downstream: Downstream,
    downstream_url: str,
) -> None:
    relay, _ = make_relay(services={"keyed": {"api_key": {"value": API_KEY, "query_param": "key"}}})
    client = _client(relay, service)
    target = f"{_other_origin(downstream_url)}/whoami"
    answer = client.get("/redirect", params={"to": target}, follow_redirects=True)
    assert answer.status_code == 200
    first, second = downstream.seen
    assert first["authorization"] or first["query"].get("key") == API_KEY
    assert second["authorization"] == ""
    assert "key" not in second["query"]


def test_ds01_same_origin_redirect_keeps_the_credential(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream, downstream_url: str
) -> None:
    relay, _ = make_relay()
    answer = _client(relay, "billing").get(
        "/redirect", params={"to": f"{downstream_url}/whoami"}, follow_redirects=True
    )
    assert answer.status_code == 200
    assert downstream.seen[1]["authorization"] == downstream.seen[0]["authorization"] != ""


def test_ds02_downstream_cookies_are_never_replayed(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    first = _client(relay, "keyed")
    first.get("/set-cookie")
    _client(relay, "keyed").get("/whoami")
    assert [entry["cookie"] for entry in downstream.seen] == [None, None]


def test_ds02_async_client_is_pooled_once_and_closed(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    runtime = relay.services.runtimes["billing"]

    async def go() -> None:
        clients = [_client(relay, "billing", asynchronous=True) for _ in range(5)]
        answers = await asyncio.gather(*(c.get("/whoami") for c in clients))
        assert {a.status_code for a in answers} == {200}
        pooled = runtime.async_client
        assert _client(relay, "billing", asynchronous=True)._runtime.async_client is pooled
        await relay.aclose()
        assert pooled.is_closed

    asyncio.run(go())
    assert clean_idp.counters.count(endpoint="token") == 1


def test_services_contract(make_relay: MakeRelay, clean_idp: IdentityProvider) -> None:
    relay, _ = make_relay()
    services = relay.services.for_request(ANONYMOUS, NO_CREDENTIALS, asynchronous=False)
    assert "billing" in services and "nope" not in services
    assert list(services) == list(relay.settings.services)
    assert services.billing is services["billing"]
    with pytest.raises(UnknownService, match="configured services: billing, calendar"):
        services["nope"]
    with pytest.raises(AttributeError):
        _ = services.nope
    # Nothing was fetched or built by looking.
    assert clean_idp.counters.count() == 0
    assert relay.services.runtimes["billing"]._sync is None


def test_call_decodes_json_and_raises_typed_errors(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    keyed = _client(relay, "keyed")
    assert keyed.call("/status/200") == {"status": 200}
    with pytest.raises(DownstreamClientError) as client_error:
        keyed.call("/status/404")
    assert client_error.value.status_code == 404
    assert client_error.value.body == b'{"status":404}'
    with pytest.raises(DownstreamServerError) as server_error:
        keyed.call("/status/503", method="POST", json={"a": 1})
    assert server_error.value.status_code == 503
    assert keyed.call("/nested/100") == {"a": json.loads("[" * 100 + "]" * 100)}
    with pytest.raises(ValueError, match="too_deep"):  # never a RecursionError
        keyed.call("/nested/5000")


def test_sk01_api_key_header_and_repr(make_relay: MakeRelay, downstream: Downstream) -> None:
    relay, _ = make_relay()
    keyed = _client(relay, "keyed")
    assert keyed.authorization_header() == API_KEY
    assert API_KEY not in repr(keyed) + repr(relay.services) + repr(relay.settings)


def test_with_options_is_cached_under_its_own_key(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    billing = _client(relay, "billing")
    narrow = billing.with_options(scopes=["billing.read"], token_endpoint_params={"x": "1"})
    assert billing.authorization_header() != narrow.authorization_header()
    assert narrow.authorization_header() == narrow.authorization_header()
    assert clean_idp.counters.count(endpoint="token", grant_type="client_credentials") == 2
    with pytest.raises(ValueError, match="tenant"):
        billing.with_options(tenant="contoso")
    with pytest.raises(ValueError, match="agent"):
        billing.with_options(actor="nobody")
