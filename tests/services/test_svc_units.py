"""Smaller rules of the services layer: TX-04 lifetimes, DS-04, settings checks, warm cache."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from joserfc.jwk import RSAKey
from svc_support import Downstream, caller_token

from authrelay import Settings
from authrelay.errors import ConfigurationError
from authrelay.principal import ANONYMOUS, NO_CREDENTIALS
from authrelay.relay import Relay
from authrelay.testing import FakeClock
from authrelay.testing.models import GRANT_CLIENT_CREDENTIALS, OAuthClient, Resource
from authrelay.testing.provider import IdentityProvider, serve_identity_provider
from authrelay.tokens import TokenResponse

MakeRelay = Callable[..., tuple[Relay, FakeClock]]


def test_tx04_exchanged_token_never_outlives_the_subject_token(make_relay: MakeRelay) -> None:
    relay, clock = make_relay()
    runtime = relay.services.runtimes["orders"]
    response = TokenResponse("t", "Bearer", 3600.0, None)
    token = relay.services.token_from(response, runtime, (), not_after=clock() + 100)
    assert token.expires_at == clock() + 100
    plain = relay.services.token_from(
        TokenResponse("t", "Bearer", None, None), runtime, (), not_after=None
    )
    assert plain.expires_at == clock() + runtime.settings.default_token_lifetime


def test_ds04_disabled_tls_verification_is_logged(
    make_relay: MakeRelay, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="authrelay.services"):
        make_relay(services={"billing": {"insecure_skip_verify": True}})
    assert any(
        "tls_verification_disabled service=billing" in r.getMessage() for r in caplog.records
    )


def test_ds02_default_headers_cannot_carry_credentials(make_relay: MakeRelay) -> None:
    with pytest.raises(ConfigurationError, match="may not be set"):
        make_relay(services={"billing": {"headers": {"Authorization": "Bearer x"}}})


def test_ds01_plain_http_needs_allow_http() -> None:
    with pytest.raises(ConfigurationError, match="allow_http"):
        Settings(
            dev_mode=True,
            services={"x": {"base_url": "http://api.example", "flow": "api_key",
                            "api_key": {"value": "k"}}},
        )  # fmt: skip


def test_warm_cache_serves_while_the_provider_is_down(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    client = relay.services.for_request(ANONYMOUS, NO_CREDENTIALS, asynchronous=False)["billing"]
    header = client.authorization_header()
    clean_idp.faults.add("token", drop=True, count=None)
    fresh = relay.services.for_request(ANONYMOUS, NO_CREDENTIALS, asynchronous=False)["billing"]
    assert fresh.authorization_header() == header
    assert clean_idp.counters.count(endpoint="token") == 1


def test_exchange_needs_a_bearer_caller(make_relay: MakeRelay, clean_idp: IdentityProvider) -> None:
    from authrelay.errors import MissingCredentials

    relay, _ = make_relay()
    client = relay.services.for_request(ANONYMOUS, NO_CREDENTIALS, asynchronous=False)["orders"]
    with pytest.raises(MissingCredentials):
        client.authorization_header()
    assert caller_token(clean_idp)  # the provider is up; refusing was our decision
    assert clean_idp.counters.count(endpoint="token") == 0


def test_ac11_private_key_jwt_against_the_provider(downstream_url: str) -> None:
    key = RSAKey.generate_key(2048, {"kid": "app-key", "alg": "RS256"})
    provider = IdentityProvider(
        clients=[
            OAuthClient(
                client_id="pkj-app",
                jwks={"keys": [key.as_dict(private=False)]},
                grant_types=(GRANT_CLIENT_CREDENTIALS,),
            )
        ],
        resources=[Resource("api://billing", scopes=("billing.read",))],
    )
    with serve_identity_provider(provider) as issuer:
        settings = Settings(
            dev_mode=True,
            bearer={"issuer": issuer, "audience": "api://app"},
            client={
                "client_id": "pkj-app",
                "token_endpoint_auth_method": "private_key_jwt",
                "private_key": key.as_pem(private=True).decode(),
                "private_key_id": "app-key",
            },
            http={"allow_insecure_loopback": True},
            services={
                "billing": {"base_url": downstream_url, "allow_http": True,
                            "flow": "client_credentials", "audience": "api://billing"}
            },
        )  # fmt: skip
        relay = Relay(settings)
        try:
            services = relay.services.for_request(ANONYMOUS, NO_CREDENTIALS, asynchronous=False)
            header = services["billing"].authorization_header()
        finally:
            relay.close()
    claims = provider.keys.verify(header[7:])
    assert claims is not None and claims[1]["client_id"] == "pkj-app"
