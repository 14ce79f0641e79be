"""JWS compact verification and explicit JWT claims rules (RFC 7515, 7519, 8725, 9068).

Verify, then validate: :func:`verify_jws` proves who signed the token; :func:`validate_claims`
then applies a :class:`ClaimRules` (issuer, audiences, times, token kind). The same pieces
serve access tokens (:func:`access_token_rules`) and, for connectors, OIDC ID tokens
(:func:`id_token_rules`) with their own issuer, audience and algorithm list.

Rules, in the order they are applied (each failure raises :class:`InvalidToken` whose
description never repeats token contents, BR-05; ``context["reason"]`` names the rule):

1. Structure before any decode (JW-10): ≤ 16 KiB, exactly three segments (JWE's five are
   refused), header segment ≤ 4 KiB, base64url alphabet only.
2. JOSE header (JW-01, JW-03, JW-04, JW-11): a JSON object without duplicate members;
   ``alg`` in the configured allow-list (``none`` in any case and HMAC never);
   ``crit`` absent or empty; ``b64`` absent or true; ``zip`` refused; ``jwk``, ``jku``,
   ``x5u`` and ``x5c`` are never used for trust.
3. Signature with keys from the issuer's JWKS only, each key fitting exactly the header's
   algorithm family (JW-02, JW-13, JW-14); joserfc's algorithm does the cryptography.
4. Claims (JW-05 … JW-09, JW-11): a JSON object without duplicate members; exact ``iss``;
   ``aud`` containing a configured audience; numeric, finite ``exp``/``nbf``/``iat`` with
   leeway; required claims and ``typ`` per profile; ID and logout tokens refused as
   access tokens.
"""

from __future__ import annotations

import binascii
import json
import math
import re
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from joserfc.jws import JWSRegistry

from .._io import Flow
from .._types import Clock
from ..errors import ConfigurationError, InvalidToken
from .jwks import JwksCache

__all__ = [
    "ClaimRules",
    "JwtValidator",
    "VerifiedJwt",
    "access_token_rules",
    "check_algorithms",
    "id_token_rules",
    "parse_json_object",
    "validate_claims",
    "verify_jws",
]

MAX_TOKEN_BYTES = 16 * 1024
MAX_HEADER_BYTES = 4 * 1024
_MAX_SAFE_INTEGER = 2**53
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_ASYMMETRIC = frozenset(
    name
    for name in JWSRegistry.algorithms
    if name[:2] in ("RS", "PS", "ES") or name in ("EdDSA", "Ed25519", "Ed448")
)
_AT_JWT = frozenset({"at+jwt", "application/at+jwt"})
_LEGACY_TYP = frozenset({"jwt", "application/jwt", "at+jwt", "application/at+jwt"})
_ID_TOKEN_MARKERS = frozenset({"nonce", "at_hash", "c_hash", "events", "s_hash"})


def _reject(description: str, reason: str) -> InvalidToken:
    return InvalidToken(description, reason=reason)


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Duplicate  # RFC 7515 §5.2 allows rejecting duplicate member names (JW-11)
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
_URLSAFE = bytes.maketrans(b"-_", b"+/")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Parse a JSON object strictly: duplicate member names and NaN/Infinity are errors."""
    value = _DECODER.decode(raw.decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _b64(segment: str) -> bytes:
    # the segment was checked against the base64url alphabet already
    raw = (segment + "=" * (-len(segment) % 4)).encode("ascii").translate(_URLSAFE)
    return binascii.a2b_base64(raw, strict_mode=True)


@dataclass(frozen=True, slots=True)
class VerifiedJwt:
    """A token whose signature checked out (and, from a validator, whose claims did)."""

    header: Mapping[str, Any]
    claims: Mapping[str, Any]

    def __repr__(self) -> str:
        return f"VerifiedJwt(alg={self.header.get('alg')!r}, kid={self.header.get('kid')!r})"


def check_algorithms(algorithms: Collection[str]) -> frozenset[str]:
    """Validate an algorithm allow-list: asymmetric JWS algorithms only (JW-01, JW-02)."""
    bad = [alg for alg in algorithms if alg not in _ASYMMETRIC]
    if bad or not algorithms:
        raise ConfigurationError(
            f"JWT algorithms must be asymmetric JWS algorithms, got {sorted(bad) or 'none'}; "
            "'none' and HMAC are never used with keys from a JWKS (RFC 8725 §3.1, §3.2)"
        )
    return frozenset(algorithms)


def verify_jws(token: str, *, keys: JwksCache, algorithms: frozenset[str]) -> Flow[VerifiedJwt]:
    """Verify a JWS compact token's structure, header and signature (rules 1 to 3).

    ``algorithms`` must come from :func:`check_algorithms`. Returns the header and the
    (not yet validated) claims. Raises :class:`InvalidToken`, or
    :class:`~authrelay.errors.IdentityProviderUnavailable` when keys cannot be fetched.
    """
    # RFC 8725 §3.6 and JW-10: cheap structural limits before any decoding
    if len(token) > MAX_TOKEN_BYTES:
        raise _reject("the token is too large", "too_large")
    segments = token.split(".")
    if len(segments) != 3:
        if len(segments) == 5:
            raise _reject("encrypted tokens (JWE) are not accepted", "jwe")
        raise _reject("the token is not a compact JWS", "malformed")
    header_b64, payload_b64, signature_b64 = segments
    if len(header_b64) > MAX_HEADER_BYTES:
        raise _reject("the token header is too large", "too_large")
    if _COMPACT.fullmatch(token) is None:
        raise _reject("the token is not valid base64url", "malformed")
    try:
        header = parse_json_object(_b64(header_b64))
    except _Duplicate:
        raise _reject("the token header repeats a member", "duplicate_member") from None
    except (ValueError, binascii.Error):
        raise _reject("the token header is not a JSON object", "malformed") from None
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise _reject("the token header has no algorithm", "malformed")
    if alg.lower() == "none":  # RFC 8725 §3.2
        raise _reject("unsigned tokens are not accepted", "alg_none")
    if alg not in algorithms:  # RFC 8725 §3.1
        raise _reject("the token's algorithm is not allowed", "alg_not_allowed")
    crit = header.get("crit")
    if crit is not None and crit != []:  # RFC 7515 §4.1.11: no extension is understood
        raise _reject("the token requires an unsupported extension", "crit")
    if header.get("b64", True) is not True:  # RFC 7797 unencoded payloads are refused
        raise _reject("the token requires an unsupported extension", "b64")
    if "zip" in header:
        raise _reject("compressed tokens are not accepted", "zip")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _reject("the token's key id is not a string", "malformed")
    try:
        signature = _b64(signature_b64)
        payload = _b64(payload_b64)
    except (ValueError, binascii.Error):
        raise _reject("the token is not valid base64url", "malformed") from None
    # JW-03: keys come only from the configured issuer's JWKS; jwk/jku/x5u/x5c unused
    candidates = yield from keys.candidates(kid, alg)
    signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    model = JWSRegistry.algorithms[alg]
    for key in candidates:
        try:
            valid = model.verify(signing_input, signature, key)
        except Exception:  # a key/alg mismatch inside joserfc: not this key
            valid = False
        if valid:
            break
    else:
        raise _reject("the token signature is invalid", "signature")
    try:
        claims = parse_json_object(payload)
    except _Duplicate:
        raise _reject("the token claims repeat a member", "duplicate_member") from None
    except ValueError:
        raise _reject("the token claims are not a JSON object", "malformed") from None
    return VerifiedJwt(MappingProxyType(header), MappingProxyType(claims))


@dataclass(frozen=True, slots=True)
class ClaimRules:
    """What the claims of one kind of token must satisfy (applied by :func:`validate_claims`).

    ``typ``: accepted lower-case ``typ`` header values, ``None`` accepting any or none;
    ``forbidden``: claims whose mere presence rejects the token (token-kind separation,
    JW-09); ``required``: claims that must be present.
    """

    issuer: str
    audiences: frozenset[str]
    leeway: float = 30
    required: frozenset[str] = frozenset({"iss", "exp", "aud"})
    typ: frozenset[str] | None = None
    typ_required: bool = False
    forbidden: frozenset[str] = frozenset()


def access_token_rules(
    issuer: str,
    audiences: Collection[str],
    *,
    profile: Literal["rfc9068", "legacy"] = "rfc9068",
    leeway: float = 30,
) -> ClaimRules:
    """Rules for OAuth access tokens: RFC 9068 (JW-08) or the relaxed ``legacy`` profile."""
    if profile == "rfc9068":
        # RFC 9068 §2.1, §2.2, §4
        return ClaimRules(
            issuer=issuer,
            audiences=frozenset(audiences),
            leeway=leeway,
            required=frozenset({"iss", "exp", "aud", "sub", "client_id", "iat", "jti"}),
            typ=_AT_JWT,
            typ_required=True,
            forbidden=_ID_TOKEN_MARKERS,
        )
    return ClaimRules(
        issuer=issuer,
        audiences=frozenset(audiences),
        leeway=leeway,
        required=frozenset({"iss", "exp", "aud", "sub", "iat"}),
        typ=_LEGACY_TYP,
        forbidden=_ID_TOKEN_MARKERS,
    )


def id_token_rules(issuer: str, client_id: str, *, leeway: float = 30) -> ClaimRules:
    """Base rules for OIDC ID tokens (OIDC Core §3.1.3.7); ``nonce``/``azp`` are the caller's.

    Logout tokens (``events``) and access tokens (``typ`` at+jwt) are refused (JW-09).
    """
    return ClaimRules(
        issuer=issuer,
        audiences=frozenset({client_id}),
        leeway=leeway,
        required=frozenset({"iss", "sub", "aud", "exp", "iat"}),
        typ=frozenset({"jwt", "application/jwt"}),
        forbidden=frozenset({"events"}),
    )


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        if name in claims:
            raise _reject("the token has an invalid time claim", "time_claim")
        return None
    # bool is an int subclass; strings and non-finite or absurd values are refused (JW-07)
    if (
        type(value) not in (int, float)
        or not math.isfinite(value)
        or not 0 <= value <= _MAX_SAFE_INTEGER
    ):
        raise _reject("the token has an invalid time claim", "time_claim")
    return float(value)


def validate_claims(
    header: Mapping[str, Any], claims: Mapping[str, Any], rules: ClaimRules, now: float
) -> None:
    """Apply ``rules`` to a verified token (rule 4); raise :class:`InvalidToken`."""
    typ = header.get("typ")
    if typ is not None and not isinstance(typ, str):
        raise _reject("the token type is not accepted", "typ")
    if rules.typ is not None:
        if typ is None:
            if rules.typ_required:
                raise _reject("the token type is not accepted", "typ")
        elif typ.lower() not in rules.typ:  # RFC 9068 §4, JW-08/JW-09
            raise _reject("the token type is not accepted", "typ")
    for name in rules.forbidden:
        if name in claims:  # RFC 8725 §3.12, JW-09
            raise _reject("this kind of token is not accepted here", "token_kind")
    for name in rules.required:
        if name not in claims:
            raise _reject("the token lacks a required claim", "missing_claim")
    if claims.get("iss") != rules.issuer:  # RFC 8725 §3.8: exact match
        raise _reject("the token's issuer is not trusted", "issuer")
    _check_audience(claims, rules.audiences)
    exp = _number(claims, "exp")
    nbf = _number(claims, "nbf")
    iat = _number(claims, "iat")
    if exp is not None and now > exp + rules.leeway:
        raise _reject("the token has expired", "expired")
    if nbf is not None and nbf > now + rules.leeway:
        raise _reject("the token is not valid yet", "not_yet_valid")
    if iat is not None and iat > now + rules.leeway:
        raise _reject("the token was issued in the future", "issued_in_future")
    for name in ("sub", "client_id", "jti"):
        value = claims.get(name, "")
        if name in claims and (not isinstance(value, str) or not value):
            raise _reject("the token has an invalid claim", "claim_type")


def _check_audience(claims: Mapping[str, Any], audiences: frozenset[str]) -> None:
    # RFC 7519 §4.1.3, RFC 8725 §3.9, JW-06
    aud = claims.get("aud")
    if isinstance(aud, str):
        values: Sequence[Any] = (aud,)
    elif isinstance(aud, list):
        values = aud
    else:
        raise _reject("the token's audience is not accepted", "audience")
    if not values or not all(isinstance(v, str) and v for v in values):
        raise _reject("the token's audience is not accepted", "audience")
    if audiences.isdisjoint(values):
        raise _reject("the token's audience is not accepted", "audience")


class JwtValidator:
    """Verifies and validates one kind of JWT from one issuer.

    ``verify(token)`` is a flow returning a :class:`VerifiedJwt` whose claims passed
    ``rules``; keys come from ``keys`` (the issuer's JWKS) only.
    """

    __slots__ = ("_algorithms", "_clock", "keys", "rules")

    def __init__(
        self,
        *,
        keys: JwksCache,
        algorithms: Collection[str],
        rules: ClaimRules,
        clock: Clock = time.time,
    ) -> None:
        self.keys = keys
        self.rules = rules
        self._algorithms = check_algorithms(algorithms)
        self._clock = clock

    def __repr__(self) -> str:
        return f"JwtValidator(issuer={self.rules.issuer!r})"

    def verify(self, token: str) -> Flow[VerifiedJwt]:
        """Signature, then claims; raises :class:`InvalidToken` on any failure."""
        verified = yield from verify_jws(token, keys=self.keys, algorithms=self._algorithms)
        validate_claims(verified.header, verified.claims, self.rules, self._clock())
        return verified
