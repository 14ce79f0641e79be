"""ID token and UserInfo validation (OIDC Core 1.0 §3.1.3.7, §3.1.3.8, §5.3.2, §12.2).

Verify, then validate: the signature is always checked with the provider's JWKS and the
connector's one allowed algorithm (ID-04; ``none`` and HMAC never), then every claim:

- ``iss`` exactly the issuer (ID-01); ``aud`` contains the client id and nothing
  outside ``trusted_audiences`` (ID-02); ``azp`` present with several audiences and
  equal to the client id when present (ID-03);
- ``exp`` in the future, ``iat`` present and within [now - ``iat_max_age``, now +
  leeway] (ID-05); ``sub`` present (ID-07);
- ``nonce`` present and equal to the one stored with the state (ID-06);
- ``at_hash``/``c_hash`` with the hash of the token's own ``alg``; an algorithm without
  a known hash is rejected (fail closed, ID-08);
- ``auth_time`` when ``max_age`` was requested, ``acr`` one of ``acr_values`` when it
  was requested as an Essential Claim (ID-09);
- UserInfo ``sub`` equal to the ID token's (ID-10), the access token sent in the
  ``Authorization`` header;
- on refresh, the new ID token keeps ``iss``, ``sub``, ``aud`` and ``azp`` (RT-05).

Every failure is ``invalid_id_token``; the reason is logged, the token never is.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from .. import _io
from .._crypto import b64url_encode, constant_time_equals
from .._io import Flow
from .._json import parse_object
from ..errors import CallbackError, InvalidToken, UpstreamError
from ..identity.jwt import id_token_rules, validate_claims, verify_jws
from .connector import Connector, Endpoints

__all__ = [
    "checked_userinfo",
    "fetch_userinfo",
    "half_hash",
    "same_identity",
    "validate_id_token",
    "verify_signed",
]

logger = logging.getLogger("authrelay.connectors.idtoken")

_HASHES: dict[str, Callable[[bytes], bytes]] = {
    "RS256": lambda b: hashlib.sha256(b).digest(),
    "PS256": lambda b: hashlib.sha256(b).digest(),
    "ES256": lambda b: hashlib.sha256(b).digest(),
    "ES256K": lambda b: hashlib.sha256(b).digest(),
    "RS384": lambda b: hashlib.sha384(b).digest(),
    "PS384": lambda b: hashlib.sha384(b).digest(),
    "ES384": lambda b: hashlib.sha384(b).digest(),
    "RS512": lambda b: hashlib.sha512(b).digest(),
    "PS512": lambda b: hashlib.sha512(b).digest(),
    "ES512": lambda b: hashlib.sha512(b).digest(),
    "EdDSA": lambda b: hashlib.sha512(b).digest(),
    "Ed25519": lambda b: hashlib.sha512(b).digest(),
}


def half_hash(alg: str, value: str) -> str:
    """``at_hash``/``c_hash`` of ``value`` for ``alg`` (OIDC Core §3.1.3.6); KeyError if unknown."""
    digest = _HASHES[alg](value.encode("ascii"))
    return b64url_encode(digest[: len(digest) // 2])


def _invalid(reason: str) -> CallbackError:
    logger.warning("id_token_rejected reason=%s", reason)
    return CallbackError("invalid_id_token", "the identity provider's ID token is not valid")


def _check_hash(claims: Mapping[str, Any], name: str, alg: str, value: str | None) -> None:
    expected = claims.get(name)
    if expected is None or value is None:
        return
    if alg not in _HASHES:  # ID-08: fail closed on an algorithm without a known hash
        raise _invalid(f"{name}_unknown_alg")
    if not isinstance(expected, str) or not constant_time_equals(expected, half_hash(alg, value)):
        raise _invalid(name)


def verify_signed(
    connector: Connector, endpoints: Endpoints, token: str
) -> Flow[tuple[Mapping[str, Any], dict[str, Any], str | None]]:
    """Verify a JWS the provider signed (an ID token, a logout token).

    The signature is checked with the provider's JWKS and the connector's algorithm.
    Returns the header, the claims (not yet validated) and the issuer they must name
    (None when none fits). Raises :class:`InvalidToken`.
    """
    if endpoints.jwks_uri is None:
        raise UpstreamError("the provider publishes no signing keys", connector=connector.name)
    verified = yield from verify_jws(
        token, keys=connector.jwks(endpoints.jwks_uri), algorithms=connector.algorithms
    )
    claims = dict(verified.claims)
    return verified.header, claims, connector.expected_issuer(claims)


def validate_id_token(
    connector: Connector,
    endpoints: Endpoints,
    id_token: str,
    *,
    now: float,
    nonce: str | None,
    access_token: str | None = None,
    code: str | None = None,
    max_age: int | None = None,
    acr_values: tuple[str, ...] = (),
) -> Flow[dict[str, Any]]:
    """Verify and validate an ID token; return its claims. ``nonce=None`` only on refresh."""
    settings = connector.settings
    try:
        header, claims, issuer = yield from verify_signed(connector, endpoints, id_token)
    except InvalidToken as exc:
        raise _invalid(str(exc.context.get("reason", "signature"))) from None
    if issuer is None:
        raise _invalid("issuer")
    try:
        validate_claims(
            header, claims, id_token_rules(issuer, connector.client_id, leeway=settings.leeway), now
        )
    except InvalidToken as exc:
        raise _invalid(str(exc.context.get("reason", "claims"))) from None
    aud = claims["aud"]
    audiences = [aud] if isinstance(aud, str) else list(aud)
    trusted = {connector.client_id, *settings.trusted_audiences}
    if any(a not in trusted for a in audiences):  # ID-02
        raise _invalid("untrusted_audience")
    azp = claims.get("azp")
    if len(audiences) > 1 and azp is None:  # ID-03
        raise _invalid("azp_missing")
    if azp is not None and azp != connector.client_id:
        raise _invalid("azp")
    iat = float(claims["iat"])
    if iat < now - settings.iat_max_age:  # ID-05
        raise _invalid("iat_too_old")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:  # ID-07
        raise _invalid("sub")
    if nonce is not None:  # ID-06
        got = claims.get("nonce")
        if not isinstance(got, str) or not constant_time_equals(got, nonce):
            raise _invalid("nonce")
    alg = str(header["alg"])
    _check_hash(claims, "at_hash", alg, access_token)  # ID-08
    _check_hash(claims, "c_hash", alg, code)
    if max_age is not None:  # ID-09
        auth_time = claims.get("auth_time")
        if isinstance(auth_time, bool) or not isinstance(auth_time, (int, float)):
            raise _invalid("auth_time_missing")
        if auth_time + max_age + settings.leeway < now:
            raise _invalid("auth_time_too_old")
    if acr_values:  # ID-09: acr was an Essential Claim (OIDC Core §5.5.1.1)
        acr = claims.get("acr")
        if not isinstance(acr, str) or acr not in acr_values:
            raise _invalid("acr")
    return claims


def same_identity(original: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """RT-05: a refreshed ID token names the same ``iss``, ``sub``, ``aud`` (and ``azp``)."""
    for name in ("iss", "sub", "aud"):
        if original.get(name) != new.get(name):
            return False
    return not ("azp" in new and new.get("azp") != original.get("azp", new.get("azp")))


def fetch_userinfo(connector: Connector, url: str, access_token: str) -> Flow[dict[str, Any]]:
    """GET the user info with the access token in the header (ID-10, RFC 6750 §2.1)."""
    request = httpx.Request(
        "GET",
        url,
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
    )
    try:
        response = yield from _io.send(
            request,
            max_bytes=connector.http.max_token_bytes,
            total_timeout=connector.http.metadata_timeout,
        )
    except (_io.TransportFailure, _io.ResponseTooLarge):
        raise UpstreamError("the user-info endpoint failed", connector=connector.name) from None
    if response.status_code != 200:
        raise UpstreamError(
            f"the user-info endpoint refused the request (HTTP {response.status_code})",
            connector=connector.name,
        )
    content_type = response.headers.get("content-type", "")
    if "json" not in content_type:
        # A signed (application/jwt) UserInfo response is not supported.
        raise UpstreamError("the user-info answer is not JSON", connector=connector.name)
    try:
        data = parse_object(response.content, max_bytes=connector.http.max_token_bytes)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamError("the user-info answer is not a JSON object", connector=connector.name)
    return data


def checked_userinfo(
    connector: Connector, url: str, access_token: str, sub: str
) -> Flow[dict[str, Any]]:
    """UserInfo at sign-in, as ``fetch_userinfo`` says (``auto`` | ``required`` | ``never``).

    UserInfo is optional (OIDC Core §5.3): with ``auto`` a refusal or failure is one
    WARNING and an empty answer, so the validated ID token alone signs the user in
    (oidc-provider refuses access tokens issued for another resource, RFC 8707). An
    answer naming another ``sub`` always fails (ID-10).
    """
    mode = connector.settings.fetch_userinfo
    if mode == "never":
        return {}
    try:
        info = yield from fetch_userinfo(connector, url, access_token)
    except UpstreamError as exc:
        if mode == "required":
            raise
        logger.warning(
            "userinfo_unavailable connector=%s reason=%s signing_in_from=id_token",
            connector.name,
            exc.description,
        )
        return {}
    if info.get("sub") != sub:  # ID-10
        logger.warning("userinfo_sub_mismatch connector=%s", connector.name)
        raise CallbackError("invalid_id_token", "the user info names another user")
    return info
