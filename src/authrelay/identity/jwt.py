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
   ``crit`` absent (RFC 7515 §4.1.11 forbids an empty list); ``b64`` absent or true;
   ``zip`` refused; ``jwk``, ``jku``, ``x5u`` and ``x5c`` are never used for trust.
   Header and claims go through the bounded parser (:mod:`authrelay._json`): nesting and
   size are capped, so no ``RecursionError`` escapes.
3. Signature with keys from the issuer's JWKS only, each key fitting exactly the header's
   algorithm family (JW-02, JW-13, JW-14); ``cryptography`` verifies with the public key
   taken out of the JWK once (:func:`.jwks.signature_check`).
4. Claims (JW-05 … JW-09, JW-11): a JSON object without duplicate members; exact ``iss``;
   ``aud`` containing a configured audience; numeric, finite ``exp``/``nbf``/``iat`` with
   leeway; required claims and ``typ`` per profile; ID and logout tokens refused as
   access tokens.
"""

from __future__ import annotations

import binascii
import math
import string
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from joserfc.jws import JWSRegistry

from .._io import Flow
from .._json import JsonError, parse_object
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
_COMPACT_ALPHABET = (string.ascii_letters + string.digits + "-_.").encode("ascii")
_Header = tuple[Mapping[str, Any], str, "str | None"]
_HEADERS: dict[str, _Header] = {}
"""Header segments that passed rule 2 (bar the per-validator allow-list): issuers reuse a
handful of headers, so most tokens skip the header's base64 and JSON. Bounded, cleared
when full; only headers that passed every check are kept."""
_MAX_HEADERS = 256
_STRING_CLAIMS = ("sub", "client_id", "jti")
_ABSENT = object()
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


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Parse a JOSE header or claims set with the bounded parser (:mod:`authrelay._json`)."""
    return parse_object(raw, max_bytes=MAX_TOKEN_BYTES)


_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _json_reject(part: str, exc: JsonError) -> InvalidToken:
    if exc.reason == "duplicate_member":
        return _reject(f"the token {part} repeats a member", "duplicate_member")
    if exc.reason == "too_deep":
        return _reject(f"the token {part} is nested too deeply", "too_deep")
    return _reject(f"the token {part} is not a JSON object", "malformed")


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
    header, claims = yield from _verify_signature(token, keys, algorithms)
    return VerifiedJwt(header, MappingProxyType(claims))


def _verify_signature(
    token: str, keys: JwksCache, algorithms: frozenset[str]
) -> Flow[tuple[Mapping[str, Any], dict[str, Any]]]:
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
    if not (
        header_b64
        and payload_b64
        and signature_b64
        and token.isascii()
        and not token.encode("ascii").translate(None, _COMPACT_ALPHABET)
    ):
        raise _reject("the token is not valid base64url", "malformed")
    known = _HEADERS.get(header_b64)
    if known is None:
        known = _check_header(header_b64, algorithms)
        if len(_HEADERS) >= _MAX_HEADERS:
            _HEADERS.clear()
        _HEADERS[header_b64] = known
    elif known[1] not in algorithms:  # RFC 8725 §3.1
        raise _reject("the token's algorithm is not allowed", "alg_not_allowed")
    header, alg, kid = known
    try:
        signature = _b64(signature_b64)
        payload = _b64(payload_b64)
    except (ValueError, binascii.Error):
        raise _reject("the token is not valid base64url", "malformed") from None
    # JW-03: keys come only from the configured issuer's JWKS; jwk/jku/x5u/x5c unused
    candidates = keys.ready(kid, alg)
    if candidates is None:
        candidates = yield from keys.candidates(kid, alg)
    signing_input = token[: len(header_b64) + len(payload_b64) + 1].encode("ascii")
    for key in candidates:
        try:
            valid = keys.check(key, alg)(signing_input, signature)
        except Exception:  # a key/alg mismatch inside the key: not this key
            valid = False
        if valid:
            break
    else:
        raise _reject("the token signature is invalid", "signature")
    try:
        claims = parse_json_object(payload)
    except JsonError as exc:
        raise _json_reject("claims", exc) from None
    return header, claims


def _check_header(header_b64: str, algorithms: frozenset[str]) -> _Header:
    """Rule 2 for a header segment not seen before: ``(header, alg, kid)`` or a rejection."""
    try:
        raw = _b64(header_b64)
    except (ValueError, binascii.Error):
        raise _reject("the token header is not valid base64url", "malformed") from None
    try:
        header = parse_json_object(raw)
    except JsonError as exc:
        raise _json_reject("header", exc) from None
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise _reject("the token header has no algorithm", "malformed")
    if alg.lower() == "none":  # RFC 8725 §3.2
        raise _reject("unsigned tokens are not accepted", "alg_none")
    if alg not in algorithms:  # RFC 8725 §3.1
        raise _reject("the token's algorithm is not allowed", "alg_not_allowed")
    # RFC 7515 §4.1.11: no extension is understood, and an empty list is itself invalid
    if "crit" in header:
        raise _reject("the token requires an unsupported extension", "crit")
    if header.get("b64", True) is not True:  # RFC 7797 unencoded payloads are refused
        raise _reject("the token requires an unsupported extension", "b64")
    if "zip" in header:
        raise _reject("compressed tokens are not accepted", "zip")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _reject("the token's key id is not a string", "malformed")
    return MappingProxyType(header), alg, kid


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
    if typ is None:
        if rules.typ is not None and rules.typ_required:
            raise _reject("the token type is not accepted", "typ")
    elif not isinstance(typ, str) or (rules.typ is not None and typ.lower() not in rules.typ):
        raise _reject("the token type is not accepted", "typ")  # RFC 9068 §4, JW-08/JW-09
    names = claims.keys()
    if not rules.forbidden.isdisjoint(names):  # RFC 8725 §3.12, JW-09
        raise _reject("this kind of token is not accepted here", "token_kind")
    if not names >= rules.required:
        raise _reject("the token lacks a required claim", "missing_claim")
    if claims.get("iss") != rules.issuer:  # RFC 8725 §3.8: exact match
        raise _reject("the token's issuer is not trusted", "issuer")
    _check_audience(claims.get("aud"), rules.audiences)
    exp = _number(claims, "exp")
    nbf = _number(claims, "nbf")
    iat = _number(claims, "iat")
    leeway = rules.leeway
    if exp is not None and now > exp + leeway:
        raise _reject("the token has expired", "expired")
    if nbf is not None and nbf > now + leeway:
        raise _reject("the token is not valid yet", "not_yet_valid")
    if iat is not None and iat > now + leeway:
        raise _reject("the token was issued in the future", "issued_in_future")
    for name in _STRING_CLAIMS:
        value = claims.get(name, _ABSENT)
        if value is not _ABSENT and (not isinstance(value, str) or not value):
            raise _reject("the token has an invalid claim", "claim_type")


def _check_audience(aud: Any, audiences: frozenset[str]) -> None:
    # RFC 7519 §4.1.3, RFC 8725 §3.9, JW-06: one non-empty string, or a non-empty list of them
    if isinstance(aud, str):
        if aud and aud in audiences:
            return
    elif isinstance(aud, list) and aud:
        for value in aud:
            if not isinstance(value, str) or not value:
                break
        else:
            if not audiences.isdisjoint(aud):
                return
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
        header, claims = yield from _verify_signature(token, self.keys, self._algorithms)
        validate_claims(header, claims, self.rules, self._clock())
        return VerifiedJwt(header, MappingProxyType(claims))
