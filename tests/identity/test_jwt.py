"""JWT access-token validation (SECURITY §4, JW-01 … JW-11, JW-15) over a real JWKS."""

from __future__ import annotations

import hashlib
import hmac
import importlib.metadata
import json
from collections.abc import Callable

import pytest
from bearer_idp import (
    AUDIENCE,
    DROP,
    FakeClock,
    MiniIdP,
    b64,
    sign_raw,
)
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

from authrelay._io import SyncDriver
from authrelay.errors import ConfigurationError, InvalidToken
from authrelay.identity.jwks import JwksCache
from authrelay.identity.jwt import (
    JwtValidator,
    VerifiedJwt,
    access_token_rules,
    check_algorithms,
    id_token_rules,
)
from authrelay.settings import HttpSettings

HTTP = HttpSettings(allow_insecure_loopback=True)
DEFAULT_ALGS = ("RS256", "PS256", "ES256", "EdDSA")

Verify = Callable[[str], VerifiedJwt]


def make_verify(
    idp: MiniIdP,
    clock: FakeClock,
    driver: SyncDriver,
    *,
    profile: str = "rfc9068",
    algorithms: tuple[str, ...] = DEFAULT_ALGS,
) -> Verify:
    keys = JwksCache(f"{idp.issuer}/jwks", http=HTTP, clock=clock)
    rules = access_token_rules(idp.issuer, [AUDIENCE], profile=profile, leeway=30)  # type: ignore[arg-type]
    validator = JwtValidator(keys=keys, algorithms=algorithms, rules=rules, clock=clock)
    return lambda token: driver.run(validator.verify(token))


@pytest.fixture
def verify(idp: MiniIdP, clock: FakeClock, driver: SyncDriver) -> Verify:
    return make_verify(idp, clock, driver)


def rejected(verify: Verify, token: str, reason: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        verify(token)
    assert caught.value.context.get("reason") == reason, caught.value.context
    assert caught.value.status == 401
    # BR-05: the description never echoes the token or any part of it
    for part in token.split("."):
        if len(part) > 8:
            assert part not in caught.value.description
    return caught.value


# -- accepted tokens --------------------------------------------------------------------


def test_valid_rs256_access_token_accepted(idp: MiniIdP, verify: Verify) -> None:
    result = verify(idp.mint(sub="alice"))
    assert result.claims["sub"] == "alice"
    assert result.header["kid"] == "rsa-1"
    with pytest.raises(TypeError):
        result.claims["sub"] = "mallory"  # type: ignore[index]


def test_valid_es256_access_token_accepted(idp: MiniIdP, verify: Verify) -> None:
    result = verify(idp.mint(kid="ec-1", sub="bob"))
    assert (result.header["alg"], result.claims["sub"]) == ("ES256", "bob")


def test_valid_ps256_and_eddsa_tokens_accepted(idp: MiniIdP, verify: Verify) -> None:
    idp.add_key("ed-1", OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"}))
    assert verify(idp.mint(kid="ed-1", alg="EdDSA")).claims["sub"] == "user-1"
    assert verify(idp.mint(kid="rsa-1", alg="PS256")).claims["sub"] == "user-1"


def test_audience_list_containing_configured_audience_accepted(
    idp: MiniIdP, verify: Verify
) -> None:
    assert verify(idp.mint(aud=["api://other", AUDIENCE])).claims["aud"][1] == AUDIENCE


# -- JW-01 / JW-02 algorithms -------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "NONE", "nOnE"])
def test_jw01_alg_none_rejected_in_any_case(idp: MiniIdP, verify: Verify, alg: str) -> None:
    header = json.dumps({"alg": alg, "typ": "at+jwt", "kid": "rsa-1"})
    token = f"{b64(header.encode())}.{b64(json.dumps(idp.claims()).encode())}."
    token_with_sig = token + "AAAA"
    rejected(verify, token_with_sig, "alg_none")
    rejected(verify, token, "malformed")  # an empty signature segment is not even JWS


def test_jw01_algorithm_outside_allow_list_rejected(idp: MiniIdP, verify: Verify) -> None:
    rejected(verify, idp.mint(alg="RS512"), "alg_not_allowed")


def test_jw01_key_alg_member_limits_algorithm(idp: MiniIdP, verify: Verify) -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "rs-only"})
    idp.add_key("rs-only", key, publish={**key.as_dict(private=False), "alg": "RS256"})
    assert verify(idp.mint(kid="rs-only", alg="RS256")).header["kid"] == "rs-only"
    rejected(verify, idp.mint(kid="rs-only", alg="PS256"), "alg_mismatch")


def test_jw01_header_alg_of_other_family_than_key_rejected(idp: MiniIdP, verify: Verify) -> None:
    # an ES256 header naming the RSA key's kid: the key never fits ES256
    rejected(verify, idp.mint(kid="rsa-1", alg="ES256", key=idp.keys["ec-1"]), "alg_mismatch")


def test_jw02_hmac_with_public_key_rejected(idp: MiniIdP, verify: Verify) -> None:
    # the classic confusion: HMAC-SHA256 keyed with the issuer's public key (PEM)
    public_pem = idp.keys["rsa-1"].as_pem(private=False)
    header = json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": "rsa-1"})
    signing_input = f"{b64(header.encode())}.{b64(json.dumps(idp.claims()).encode())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    rejected(verify, f"{signing_input}.{b64(mac)}", "alg_not_allowed")


@pytest.mark.parametrize("algs", [["HS256"], ["RS256", "HS512"], ["none"], []])
def test_jw02_hmac_or_none_never_configurable(algs: list[str]) -> None:
    with pytest.raises(ConfigurationError):
        check_algorithms(algs)


# -- JW-03 header keys are never trusted ---------------------------------------------------


def test_jw03_embedded_jwk_and_jku_ignored(idp: MiniIdP, verify: Verify) -> None:
    attacker = RSAKey.generate_key(2048)
    header = {
        "jwk": attacker.as_dict(private=False),
        "jku": f"{idp.issuer}/attacker-jwks",
        "x5u": f"{idp.issuer}/attacker-cert",
        "x5c": ["MIIB"],
    }
    rejected(verify, idp.mint(key=attacker, header=header), "signature")
    assert set(idp.counters) == {"jwks"}  # nothing but the configured JWKS was fetched


def test_jw03_trusted_key_with_ignored_members_still_verifies(idp: MiniIdP, verify: Verify) -> None:
    assert verify(idp.mint(header={"jku": "https://evil.example/jwks"})).claims


# -- JW-04 crit / b64 ---------------------------------------------------------------------


def test_jw04_unknown_crit_rejected(idp: MiniIdP, verify: Verify) -> None:
    rejected(verify, idp.mint(header={"crit": ["exp"], "exp": 1}), "crit")


def test_jw04_b64_false_rejected(idp: MiniIdP, verify: Verify) -> None:
    rejected(verify, idp.mint(header={"b64": False}), "b64")
    rejected(verify, idp.mint(header={"b64": False, "crit": ["b64"]}), "crit")


def test_jw04_empty_crit_rejected(idp: MiniIdP, verify: Verify) -> None:
    # RFC 7515 §4.1.11: producers MUST NOT use the empty list
    rejected(verify, idp.mint(header={"crit": []}), "crit")


def test_jw04_crit_of_wrong_type_rejected(idp: MiniIdP, verify: Verify) -> None:
    rejected(verify, idp.mint(header={"crit": "exp"}), "crit")


# -- JW-05 issuer -------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["{iss}/", "{iss}/tenant", "{upper}", "x{iss}", None, 7])
def test_jw05_issuer_must_match_exactly(
    idp: MiniIdP, verify: Verify, variant: str | int | None
) -> None:
    iss = (
        variant.format(iss=idp.issuer, upper=idp.issuer.upper())
        if isinstance(variant, str)
        else variant
    )
    rejected(verify, idp.mint(iss=iss), "issuer")


def test_jw05_missing_issuer_rejected(idp: MiniIdP, verify: Verify) -> None:
    rejected(verify, idp.mint(iss=DROP), "missing_claim")


# -- JW-06 audience -----------------------------------------------------------------------


def test_jw06_missing_audience_rejected(idp: MiniIdP, verify: Verify) -> None:
    rejected(verify, idp.mint(aud=DROP), "missing_claim")


@pytest.mark.parametrize(
    "aud", ["", [""], [], None, 1, {"aud": AUDIENCE}, ["api://other"], [AUDIENCE, 5]]
)
def test_jw06_empty_string_audience_rejected(idp: MiniIdP, verify: Verify, aud: object) -> None:
    rejected(verify, idp.mint(aud=aud), "audience")


def test_jw06_other_audience_rejected(idp: MiniIdP, verify: Verify) -> None:
    rejected(verify, idp.mint(aud="api://orders/"), "audience")


# -- JW-07 times --------------------------------------------------------------------------


def test_jw07_missing_exp_rejected(idp: MiniIdP, verify: Verify) -> None:
    rejected(verify, idp.mint(exp=DROP), "missing_claim")


@pytest.mark.parametrize("exp", ["1900000000", True, None, 2**53 + 1, -1, [1900000000]])
def test_jw07_exp_must_be_a_json_number(idp: MiniIdP, verify: Verify, exp: object) -> None:
    rejected(verify, idp.mint(exp=exp), "time_claim")


@pytest.mark.parametrize("literal", ["1e309", "-1e309"])
def test_jw07_non_finite_exp_rejected(idp: MiniIdP, verify: Verify, literal: str) -> None:
    claims = json.dumps(idp.claims(exp=1234)).replace('"exp": 1234', f'"exp": {literal}')
    header = json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"})
    rejected(verify, sign_raw(header, claims, idp.keys["rsa-1"], "RS256"), "time_claim")


def test_jw07_nan_exp_rejected(idp: MiniIdP, verify: Verify) -> None:
    claims = json.dumps(idp.claims(exp=1234)).replace('"exp": 1234', '"exp": NaN')
    header = json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"})
    rejected(verify, sign_raw(header, claims, idp.keys["rsa-1"], "RS256"), "malformed")


def test_jw07_expired_beyond_leeway_rejected(
    idp: MiniIdP, verify: Verify, clock: FakeClock
) -> None:
    token = idp.mint(exp=int(clock.now) + 60)
    clock.advance(60 + 29)
    assert verify(token).claims  # within the 30 s leeway
    clock.advance(2)
    rejected(verify, token, "expired")


def test_jw07_float_exp_accepted(idp: MiniIdP, verify: Verify, clock: FakeClock) -> None:
    assert verify(idp.mint(exp=clock.now + 100.5)).claims


def test_jw07_future_nbf_rejected(idp: MiniIdP, verify: Verify, clock: FakeClock) -> None:
    rejected(verify, idp.mint(nbf=int(clock.now) + 31), "not_yet_valid")
    assert verify(idp.mint(nbf=int(clock.now) + 29)).claims


def test_jw07_future_iat_rejected(idp: MiniIdP, verify: Verify, clock: FakeClock) -> None:
    rejected(verify, idp.mint(iat=int(clock.now) + 3600), "issued_in_future")


def test_jw07_iat_of_wrong_type_rejected(idp: MiniIdP, verify: Verify) -> None:
    rejected(verify, idp.mint(iat="now"), "time_claim")


# -- JW-08 profile ------------------------------------------------------------------------


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_jw08_at_jwt_typ_accepted(idp: MiniIdP, verify: Verify, typ: str) -> None:
    assert verify(idp.mint(header={"typ": typ})).claims


@pytest.mark.parametrize("typ", [DROP, "JWT", "jwt", "at+jwt2", "logout+jwt", 1])
def test_jw08_rfc9068_requires_at_jwt_typ(idp: MiniIdP, verify: Verify, typ: object) -> None:
    rejected(verify, idp.mint(header={"typ": typ}), "typ")


@pytest.mark.parametrize("claim", ["sub", "client_id", "iat", "jti"])
def test_jw08_rfc9068_required_claims(idp: MiniIdP, verify: Verify, claim: str) -> None:
    rejected(verify, idp.mint(**{claim: DROP}), "missing_claim")


def test_jw08_legacy_profile_relaxes_typ_client_id_jti(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    legacy = make_verify(idp, clock, driver, profile="legacy")
    token = idp.mint(header={"typ": "JWT"}, client_id=DROP, jti=DROP)
    assert legacy(token).claims["sub"] == "user-1"
    assert legacy(idp.mint(header={"typ": DROP})).claims
    rejected(legacy, idp.mint(sub=DROP), "missing_claim")
    rejected(legacy, idp.mint(header={"typ": "logout+jwt"}), "typ")


@pytest.mark.parametrize("claim", ["sub", "client_id", "jti"])
def test_jw08_identifier_claims_must_be_strings(idp: MiniIdP, verify: Verify, claim: str) -> None:
    rejected(verify, idp.mint(**{claim: 42}), "claim_type")


# -- JW-09 token kinds --------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"nonce": "n-0S6_WzA2Mj"},
        {"at_hash": "77QmUPtjPfzWtF2AnpK9RQ"},
        {"events": {"http://schemas.openid.net/event/backchannel-logout": {}}},
    ],
)
def test_jw09_id_and_logout_tokens_rejected_as_access_tokens(
    idp: MiniIdP, verify: Verify, extra: dict[str, object]
) -> None:
    rejected(verify, idp.mint(**extra), "token_kind")


def test_jw09_id_token_shaped_jwt_rejected(idp: MiniIdP, verify: Verify) -> None:
    # an ID token for a client: typ JWT, aud = the client, a nonce
    token = idp.mint(header={"typ": "JWT"}, aud="rp-client", nonce="abc")
    rejected(verify, token, "typ")


def test_jw09_id_token_rules_refuse_access_and_logout_tokens(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    keys = JwksCache(f"{idp.issuer}/jwks", http=HTTP, clock=clock)
    rules = id_token_rules(idp.issuer, "rp-client")
    validator = JwtValidator(keys=keys, algorithms=["RS256"], rules=rules, clock=clock)

    def check(token: str) -> VerifiedJwt:
        return driver.run(validator.verify(token))

    id_token = idp.mint(header={"typ": "JWT"}, aud="rp-client", nonce="n")
    assert check(id_token).claims["nonce"] == "n"
    rejected(check, idp.mint(aud="rp-client"), "typ")  # typ at+jwt: an access token
    logout = idp.mint(header={"typ": "JWT"}, aud="rp-client", events={"x": {}})
    rejected(check, logout, "token_kind")


# -- JW-10 structure ----------------------------------------------------------------------


def test_jw10_oversized_token_rejected_before_decoding(idp: MiniIdP, verify: Verify) -> None:
    rejected(verify, idp.mint(padding="x" * 16_500), "too_large")
    assert idp.counters["jwks"] == 0  # refused before any key lookup


def test_jw10_oversized_header_rejected(idp: MiniIdP, verify: Verify) -> None:
    rejected(verify, idp.mint(header={"x": "y" * 3100}), "too_large")


@pytest.mark.parametrize("token", ["a.b", "a.b.c.d", "abc", "a..b.c", "....."])
def test_jw10_wrong_segment_count_rejected(verify: Verify, token: str) -> None:
    rejected(verify, token, "malformed")


def test_jw10_jwe_compact_rejected(idp: MiniIdP, verify: Verify) -> None:
    header = b64(json.dumps({"alg": "RSA-OAEP", "enc": "A256GCM", "zip": "DEF"}).encode())
    rejected(verify, f"{header}.AAAA.BBBB.CCCC.DDDD", "jwe")


def test_jw10_zip_header_rejected(idp: MiniIdP, verify: Verify) -> None:
    rejected(verify, idp.mint(header={"zip": "DEF"}), "zip")


@pytest.mark.parametrize("bad", ["+", "/", "=", " ", "\n", "é"])
def test_jw10_non_base64url_characters_rejected(idp: MiniIdP, verify: Verify, bad: str) -> None:
    head, payload, sig = idp.mint().split(".")
    rejected(verify, f"{head}.{payload[:10]}{bad}{payload[10:]}.{sig}", "malformed")


def test_jw10_header_not_json_object_rejected(verify: Verify) -> None:
    rejected(verify, f"{b64(b'[1,2]')}.{b64(b'{}')}.AAAA", "malformed")
    rejected(verify, f"{b64(b'{not json')}.{b64(b'{}')}.AAAA", "malformed")


# -- JW-11 duplicate members --------------------------------------------------------------


def test_jw11_duplicate_header_member_rejected(idp: MiniIdP, verify: Verify) -> None:
    header = '{"alg":"RS256","typ":"at+jwt","kid":"rsa-1","alg":"none"}'
    token = sign_raw(header, json.dumps(idp.claims()), idp.keys["rsa-1"], "RS256")
    rejected(verify, token, "duplicate_member")


def test_jw11_duplicate_claim_rejected(idp: MiniIdP, verify: Verify) -> None:
    claims = json.dumps(idp.claims(sub="alice"))[:-1] + ', "sub": "admin"}'
    header = json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"})
    rejected(verify, sign_raw(header, claims, idp.keys["rsa-1"], "RS256"), "duplicate_member")


def test_jw11_nested_duplicate_claim_rejected(idp: MiniIdP, verify: Verify) -> None:
    claims = json.dumps(idp.claims())[:-1] + ', "act": {"sub": "a", "sub": "b"}}'
    header = json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"})
    rejected(verify, sign_raw(header, claims, idp.keys["rsa-1"], "RS256"), "duplicate_member")


# -- signatures ---------------------------------------------------------------------------


def test_tampered_payload_rejected(idp: MiniIdP, verify: Verify) -> None:
    head, _, sig = idp.mint(sub="alice").split(".")
    forged = b64(json.dumps(idp.claims(sub="admin")).encode())
    rejected(verify, f"{head}.{forged}.{sig}", "signature")


def test_truncated_es256_signature_rejected(idp: MiniIdP, verify: Verify) -> None:
    head, payload, sig = idp.mint(kid="ec-1").split(".")
    rejected(verify, f"{head}.{payload}.{sig[:-4]}", "signature")


def test_signature_by_unpublished_key_with_known_kid_rejected(idp: MiniIdP, verify: Verify) -> None:
    rogue = ECKey.generate_key("P-256")
    rejected(verify, idp.mint(kid="ec-1", key=rogue), "signature")


# -- JW-15 library versions ---------------------------------------------------------------


def test_jw15_verification_libraries_pinned() -> None:
    def version(name: str) -> tuple[int, ...]:
        return tuple(int(part) for part in importlib.metadata.version(name).split(".")[:3])

    assert version("joserfc") >= (1, 6, 0)
    assert version("authlib") >= (1, 6, 11)
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("python-jose")
    assert "none" not in check_algorithms(DEFAULT_ALGS)
    assert JWSRegistry.algorithms["RS256"].name == "RS256"
