"""Issuer discovery (ID-01, TR-01 … TR-03) against a loopback provider."""

from __future__ import annotations

import pytest
from bearer_idp import (
    DROP,
    Dispatcher,
    FakeClock,
    MiniIdP,
    install,
)
from starlette.responses import JSONResponse, RedirectResponse, Response

from authrelay._io import SyncDriver
from authrelay.errors import IdentityProviderUnavailable
from authrelay.identity.discovery import (
    Discovery,
    UnsafeEndpoint,
    check_endpoint_url,
    discovery_urls,
)
from authrelay.settings import HttpSettings

HTTP = HttpSettings(allow_insecure_loopback=True)


def discover(idp: MiniIdP, clock: FakeClock, issuer: str | None = None) -> Discovery:
    return Discovery(issuer or idp.issuer, http=HTTP, clock=clock, ttl=3600)


def unavailable(driver: SyncDriver, discovery: Discovery) -> IdentityProviderUnavailable:
    with pytest.raises(IdentityProviderUnavailable) as caught:
        driver.run(discovery.document())
    assert caught.value.status == 503
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1
    return caught.value


def test_openid_configuration_fetched_and_validated(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    doc = driver.run(discover(idp, clock).document())
    assert doc.issuer == idp.issuer
    assert doc.jwks_uri == f"{idp.issuer}/jwks"
    assert doc.endpoint("token_endpoint") == f"{idp.issuer}/token"
    assert dict(doc)["issuer"] == idp.issuer
    with pytest.raises(TypeError):
        doc["issuer"] = "x"  # type: ignore[index]


def test_document_cached_for_ttl(idp: MiniIdP, clock: FakeClock, driver: SyncDriver) -> None:
    discovery = discover(idp, clock)
    first = driver.run(discovery.document())
    clock.advance(3599)
    assert driver.run(discovery.document()) is first
    assert idp.counters["openid"] == 1
    clock.advance(2)
    driver.run(discovery.document())
    assert idp.counters["openid"] == 2


def test_rfc8414_fallback_with_path_insertion(
    server: tuple[str, Dispatcher], clock: FakeClock, driver: SyncDriver
) -> None:
    base_url, dispatcher = server
    idp = install(dispatcher, base_url, clock, path="/tenant-a")
    idp.oidc_discovery = False
    doc = driver.run(discover(idp, clock).document())
    assert doc.issuer == f"{base_url}/tenant-a"
    assert (idp.counters["openid"], idp.counters["oauth"]) == (1, 1)


def test_discovery_urls_follow_both_specs() -> None:
    assert discovery_urls("https://idp.example/tenant/") == (
        "https://idp.example/tenant/.well-known/openid-configuration",
        "https://idp.example/.well-known/oauth-authorization-server/tenant",
    )
    assert discovery_urls("https://idp.example:8443") == (
        "https://idp.example:8443/.well-known/openid-configuration",
        "https://idp.example:8443/.well-known/oauth-authorization-server",
    )


# -- ID-01 issuer equality ----------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["/", "/other", "X"])
def test_id01_issuer_mismatch_is_503(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver, suffix: str
) -> None:
    idp.metadata_overrides["issuer"] = idp.issuer + suffix
    error = unavailable(driver, discover(idp, clock))
    assert "different issuer" in error.description


def test_id01_configured_issuer_with_trailing_slash_not_normalised(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    unavailable(driver, discover(idp, clock, issuer=idp.issuer + "/"))


def test_id01_missing_issuer_is_503(idp: MiniIdP, clock: FakeClock, driver: SyncDriver) -> None:
    idp.metadata_overrides["issuer"] = None
    unavailable(driver, discover(idp, clock))


# -- TR-01 endpoint URLs ------------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    ["jwks_uri", "token_endpoint", "introspection_endpoint", "revocation_endpoint"],
)
def test_tr01_plain_http_endpoint_in_metadata_is_503(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver, field: str
) -> None:
    idp.metadata_overrides[field] = "http://idp.example/keys"
    error = unavailable(driver, discover(idp, clock))
    assert field in error.description


@pytest.mark.parametrize(
    "url",
    [
        "http://idp.example/jwks",
        "ftp://idp.example/jwks",
        "https://user:pw@idp.example/jwks",
        "https://idp.example/jwks#frag",
        "https:///jwks",
        "/relative/jwks",
        "https://idp.example/jw ks",
        "https://idp.example/\r\njwks",
        "https://idp.example/\x7fjwks",
        "https://idp.example/\uff0fauthorize",
        "https://id\u03c1.example/authorize",
        "",
    ],
)
def test_tr01_unsafe_urls_refused(url: str) -> None:
    with pytest.raises(UnsafeEndpoint):
        check_endpoint_url(url, HTTP)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/jwks", "http://localhost/jwks", "http://[::1]:9/jwks"]
)
def test_tr01_loopback_http_only_when_allowed(url: str) -> None:
    assert check_endpoint_url(url, HTTP) == url
    with pytest.raises(UnsafeEndpoint):
        check_endpoint_url(url, HttpSettings())


def test_tr01_https_accepted() -> None:
    url = "https://login.example.com/tenant/v2.0/keys"
    assert check_endpoint_url(url, HttpSettings()) == url


def test_tr01_insecure_issuer_refused_at_construction(clock: FakeClock) -> None:
    with pytest.raises(UnsafeEndpoint):
        Discovery("http://idp.example", http=HTTP, clock=clock)


# -- TR-02 / TR-03 and outages ------------------------------------------------------------


def test_tr02_cross_origin_redirect_not_followed(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    idp.faults["openid"] = lambda: RedirectResponse("https://evil.example/.well-known/x")
    idp.faults["oauth"] = lambda: RedirectResponse("https://evil.example/.well-known/x")
    unavailable(driver, discover(idp, clock))


def test_tr03_oversized_metadata_is_503(idp: MiniIdP, clock: FakeClock, driver: SyncDriver) -> None:
    idp.metadata_overrides["padding"] = "x" * (513 * 1024)
    unavailable(driver, discover(idp, clock))


@pytest.mark.parametrize(
    "fault",
    [
        lambda: Response(status_code=500),
        lambda: Response(status_code=503, headers={"retry-after": "30"}),
        lambda: Response(b"{not json", media_type="application/json"),
        lambda: JSONResponse(["a", "list"]),
    ],
    ids=["500", "503", "garbage", "not-object"],
)
def test_metadata_outage_is_503(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver, fault: object
) -> None:
    idp.faults["openid"] = fault  # type: ignore[assignment]
    unavailable(driver, discover(idp, clock))


def test_failures_not_cached_beyond_a_few_seconds(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    idp.faults["openid"] = lambda: Response(status_code=502)
    discovery = discover(idp, clock)
    for _ in range(3):
        unavailable(driver, discovery)
    assert idp.counters["openid"] == 1
    del idp.faults["openid"]
    clock.advance(6)
    assert driver.run(discovery.document()).issuer == idp.issuer


def test_failed_refresh_keeps_last_good_document(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    discovery = discover(idp, clock)
    first = driver.run(discovery.document())
    clock.advance(3601)
    idp.faults["openid"] = lambda: Response(status_code=503)
    assert driver.run(discovery.document()) is first
    assert discovery.cached() is first


# -- members checked by authlib's RFC 8414 / OIDC Discovery rules ------------------------


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("response_types_supported", "code"),  # RFC 8414 §2: a JSON array
        ("grant_types_supported", "authorization_code"),
        ("token_endpoint_auth_signing_alg_values_supported", ["none"]),  # MUST NOT be used
        ("subject_types_supported", ["everyone"]),  # OIDC Discovery §3: public, pairwise
        ("claims_parameter_supported", "yes"),  # a boolean
    ],
)
def test_malformed_metadata_member_is_503_naming_it(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver, member: str, value: object
) -> None:
    idp.metadata_overrides[member] = value
    error = unavailable(driver, discover(idp, clock))
    assert "metadata is invalid" in error.description
    assert member in error.description


def test_rfc8414_document_is_not_held_to_oidc_rules(
    server: tuple[str, Dispatcher], clock: FakeClock, driver: SyncDriver
) -> None:
    base_url, dispatcher = server
    idp = install(dispatcher, base_url, clock, path="/plain-oauth")
    idp.oidc_discovery = False
    idp.metadata_overrides["subject_types_supported"] = ["everyone"]  # not an RFC 8414 member
    assert driver.run(discover(idp, clock).document()).issuer == f"{base_url}/plain-oauth"


def test_a_minimal_bearer_issuer_document_is_enough(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    # RFC 8414 requires response_types_supported and an authorization endpoint of a full
    # authorization server; a resource server's issuer only needs issuer and jwks_uri.
    for member in ("token_endpoint", "introspection_endpoint"):
        idp.metadata_overrides[member] = DROP
    doc = driver.run(discover(idp, clock).document())
    assert set(doc) == {"issuer", "jwks_uri"}


def test_an_es256_only_provider_is_accepted(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    # OIDC Discovery §3 asks providers to list RS256; each ID token's alg is checked
    # against the connector's setting instead, so a provider without RS256 still works.
    idp.metadata_overrides["id_token_signing_alg_values_supported"] = ["ES256"]
    assert driver.run(discover(idp, clock).document()).issuer == idp.issuer
