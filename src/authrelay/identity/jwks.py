"""An issuer's signing keys (RFC 7517 JWK Set), parsed once per fetch and rotated safely.

Defends against:

- keys that must never verify a signature (JW-12): unknown ``kty``, symmetric ``oct``
  keys (an HMAC secret published in a JWKS is a forgery kit), RSA keys under 2048 bits,
  encryption keys (``use: enc`` or ``key_ops`` without ``verify``), and private members
  in a public document. Each such key is skipped on its own; the others keep working;
- algorithm confusion (JW-01, JW-02): a key fits only the algorithms of its own family
  (and its ``alg`` member when present); HMAC never fits any JWKS key;
- refetch storms driven by forged ``kid`` values (JW-13): an unknown ``kid`` triggers at
  most one refetch per cooldown, and concurrent refetches are single-flight;
- oversized or slow JWKS responses (TR-03) via the driver's caps.

The JWKS URL comes only from configuration or validated discovery metadata (JW-03,
TR-01); token headers (``jku``, ``x5u``, ``jwk``, ``x5c``) never reach this module.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

from .. import _io
from .._io import Flow
from .._json import parse_object
from .._types import Clock
from ..errors import IdentityProviderUnavailable, InvalidToken
from ..settings import HttpSettings
from .discovery import check_endpoint_url, metadata_failure

__all__ = [
    "MAX_CANDIDATES",
    "JwksCache",
    "Key",
    "SignatureCheck",
    "key_fits",
    "parse_jwks",
    "signature_check",
]

logger = logging.getLogger("authrelay.jwks")

Key: TypeAlias = "RSAKey | ECKey | OKPKey"
SignatureCheck: TypeAlias = Callable[[bytes, bytes], bool]
"""``check(signing_input, signature)``: True when the signature is valid."""

MAX_CANDIDATES = 5
"""At most this many keys are tried for a token without ``kid`` (JW-14)."""
_MIN_RSA_BITS = 2048
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_EC_CURVES = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512", "secp256k1": "ES256K"}
_OKP_CURVES = {"Ed25519": ("EdDSA", "Ed25519"), "Ed448": ("EdDSA", "Ed448")}
_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_FAILURE_TTL = 5.0
_MAX_CHECKS = 64
_TTL = 3600.0


def key_fits(key: Key, alg: str) -> bool:
    """True if ``key`` may verify signatures made with ``alg`` (one family per key, JW-02)."""
    declared = key.get("alg")
    if declared is not None and declared != alg:
        return False
    if isinstance(key, RSAKey):
        return alg in _RSA_ALGS
    if isinstance(key, ECKey):
        return _EC_CURVES.get(key.curve_name) == alg
    return alg in _OKP_CURVES.get(key.curve_name, ())


_HASHES: dict[str, hashes.HashAlgorithm] = {
    "256": hashes.SHA256(),
    "384": hashes.SHA384(),
    "512": hashes.SHA512(),
}


def signature_check(key: Key, alg: str) -> SignatureCheck:
    """How ``key`` verifies ``alg`` (``key_fits`` accepted it), set up once: joserfc's checks
    (RFC 7518 §3.3-3.5, RFC 8037 §3.1) minus their per-call set-up; others use joserfc."""
    family, bits = alg[:2], alg[2:]
    public: Any = key.get_op_key("verify")
    if family == "RS" and bits in _HASHES:
        return _rsa_check(public, padding.PKCS1v15(), _HASHES[bits])
    if family == "PS" and bits in _HASHES:
        digest = _HASHES[bits]
        pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        return _rsa_check(public, pss, digest)
    if family == "ES" and bits in _HASHES and isinstance(key, ECKey):
        # RFC 7518 §3.4: R || S, each as long as the curve's order
        return _ec_check(public, (key.curve_key_size + 7) // 8, ec.ECDSA(_HASHES[bits]))
    if alg in ("EdDSA", "Ed25519", "Ed448") and isinstance(key, OKPKey):
        return _eddsa_check(public)
    model = JWSRegistry.algorithms[alg]
    return lambda signing_input, signature: bool(model.verify(signing_input, signature, key))


def _rsa_check(
    public: Any, pad: padding.AsymmetricPadding, digest: hashes.HashAlgorithm
) -> SignatureCheck:
    verify = public.verify

    def check(signing_input: bytes, signature: bytes) -> bool:
        try:
            verify(signature, signing_input, pad, digest)
        except InvalidSignature:
            return False
        return True

    return check


def _ec_check(public: Any, length: int, ecdsa: ec.ECDSA) -> SignatureCheck:
    verify = public.verify

    def check(signing_input: bytes, signature: bytes) -> bool:
        if len(signature) != 2 * length:
            return False
        der = encode_dss_signature(
            int.from_bytes(signature[:length], "big"), int.from_bytes(signature[length:], "big")
        )
        try:
            verify(der, signing_input, ecdsa)
        except InvalidSignature:
            return False
        return True

    return check


def _eddsa_check(public: Any) -> SignatureCheck:
    def check(signing_input: bytes, signature: bytes) -> bool:
        if not isinstance(public, Ed25519PublicKey | Ed448PublicKey):
            return False
        try:
            public.verify(signature, signing_input)
        except InvalidSignature:
            return False
        return True

    return check


def _parse_key(data: Any) -> Key:
    """One JWK → a public joserfc key, or ``ValueError`` saying why it is skipped."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    kty = data.get("kty")
    if _PRIVATE_MEMBERS & data.keys():
        raise ValueError("private or symmetric key material present")
    use = data.get("use")
    if use is not None and use != "sig":
        raise ValueError(f"use is {use!r}, not 'sig'")
    ops = data.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise ValueError("key_ops does not include 'verify'")
    kid = data.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ValueError("kid is not a string")
    alg = data.get("alg")
    if alg is not None and not isinstance(alg, str):
        raise ValueError("alg is not a string")
    key: Key
    try:
        if kty == "RSA":
            key = RSAKey.import_key(data)
            if key.raw_value.key_size < _MIN_RSA_BITS:
                raise ValueError(f"RSA key of {key.raw_value.key_size} bits")
        elif kty == "EC":
            key = ECKey.import_key(data)
            if key.curve_name not in _EC_CURVES:
                raise ValueError("unsupported curve")
        elif kty == "OKP":
            key = OKPKey.import_key(data)
            if key.curve_name not in _OKP_CURVES:
                raise ValueError("not a signature curve")
        else:
            raise ValueError(f"unsupported kty {kty!r}")
    except ValueError:
        raise
    except Exception as exc:  # joserfc / cryptography parse errors
        raise ValueError(f"unparseable {kty} key ({type(exc).__name__})") from None
    if key.is_private:
        raise ValueError("private key")
    return key


def parse_jwks(document: Any) -> tuple[Key, ...]:
    """Parse a JWK Set, skipping (and logging) each key that cannot be used (JW-12)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK Set")
    keys: list[Key] = []
    for index, item in enumerate(document["keys"]):
        try:
            keys.append(_parse_key(item))
        except ValueError as exc:
            kid = item.get("kid") if isinstance(item, dict) else None
            logger.warning("jwks_key_skipped index=%d kid=%.64r reason=%s", index, kid, exc)
    return tuple(keys)


@dataclass(frozen=True, slots=True)
class _KeySet:
    keys: tuple[Key, ...]
    by_kid: Mapping[str, Key]
    fetched_at: float
    """When the last fetch was attempted (the JW-13 cooldown counts from here)."""
    refresh_at: float
    """When a scheduled refresh is due (``ttl`` after success, a cooldown after failure)."""
    stale_at: float = float("-inf")
    """When the keys of the last successful fetch may no longer be used (``jwks_max_stale``)."""


_EMPTY = _KeySet((), {}, float("-inf"), float("-inf"))


class JwksCache:
    """The keys published at one ``jwks_uri``, with rate-limited rotation.

    - keys are parsed once per fetch into joserfc key objects;
    - an unknown ``kid`` (or no fitting key) refetches at most once per
      ``refresh_cooldown`` seconds (JW-13), single-flight across concurrent callers;
    - keys are also refreshed every ``ttl`` seconds; a failed refresh keeps the previous
      keys (availability over an outage) and is retried after the cooldown, but only for
      ``http.jwks_max_stale`` seconds after the last successful fetch: then tokens get
      503, since the issuer may have revoked a key in the meantime.

    All I/O is yielded to the driver; the key set is swapped atomically, so readers in
    other threads never see a half-built set.
    """

    __slots__ = (
        "_checks",
        "_clock",
        "_failed_until",
        "_set",
        "http",
        "jwks_uri",
        "refresh_cooldown",
        "ttl",
    )

    def __init__(
        self,
        jwks_uri: str,
        *,
        http: HttpSettings,
        clock: Clock = time.time,
        refresh_cooldown: float = 30,
        ttl: float = _TTL,
    ) -> None:
        self.jwks_uri = check_endpoint_url(jwks_uri, http)
        self.http = http
        self.refresh_cooldown = refresh_cooldown
        self.ttl = ttl
        self._clock = clock
        self._set = _EMPTY
        self._failed_until = 0.0
        self._checks: dict[tuple[int, str], tuple[Key, SignatureCheck]] = {}

    def __repr__(self) -> str:
        return f"JwksCache(jwks_uri={self.jwks_uri!r}, keys={len(self._set.keys)})"

    @property
    def keys(self) -> tuple[Key, ...]:
        """The usable keys of the last successful fetch."""
        return self._set.keys

    def key_for(self, kid: str | None, alg: str) -> Flow[Key]:
        """The one key for ``kid``/``alg``; raises :class:`InvalidToken` if none or ambiguous."""
        found = yield from self.candidates(kid, alg)
        if len(found) != 1:
            raise InvalidToken("no single signing key matches the token", reason="ambiguous_key")
        return found[0]

    def candidates(self, kid: str | None, alg: str) -> Flow[tuple[Key, ...]]:
        """Keys that may verify a token with this ``kid``/``alg`` (JW-13, JW-14).

        With a ``kid``: the key with that id, if it fits ``alg``. Without one: every key
        that fits ``alg``, at most :data:`MAX_CANDIDATES`. When nothing matches, the set
        is refetched at most once per cooldown; then :class:`InvalidToken` is raised.
        Raises :class:`IdentityProviderUnavailable` when the keys cannot be fetched.
        """
        keyset = self._set
        now = self._clock()
        if now >= keyset.refresh_at or now >= keyset.stale_at:
            keyset = yield from self._refresh(now)
        found = _match(keyset, kid, alg)
        if found:
            return found
        if kid is not None and kid in keyset.by_kid:
            # the key exists but belongs to another algorithm family: no refetch
            raise InvalidToken(
                "the token's algorithm does not match its key", reason="alg_mismatch"
            )
        if now < keyset.fetched_at + self.refresh_cooldown:
            raise InvalidToken("the token is signed with an unknown key", reason="unknown_kid")
        logger.info("jwks_unknown_kid jwks_uri=%s; refetching", self.jwks_uri)
        keyset = yield from self._refresh(now)
        found = _match(keyset, kid, alg)
        if not found:
            raise InvalidToken("the token is signed with an unknown key", reason="unknown_kid")
        return found

    def check(self, key: Key, alg: str) -> SignatureCheck:
        """The :func:`signature_check` of a key from :meth:`candidates`, made once per key."""
        found = self._checks.get((id(key), alg))
        if found is not None and found[0] is key:
            return found[1]
        check = signature_check(key, alg)
        if len(self._checks) >= _MAX_CHECKS:
            self._checks.clear()  # keys were rotated many times over: start afresh
        self._checks[(id(key), alg)] = (key, check)  # holding ``key`` keeps its id unique
        return check

    def ready(self, kid: str | None, alg: str) -> tuple[Key, ...] | None:
        """What :meth:`candidates` answers when that needs no fetch, else None."""
        keyset = self._set
        now = self._clock()
        if now >= keyset.refresh_at or now >= keyset.stale_at:
            return None
        return _match(keyset, kid, alg) or None

    def warm(self) -> Flow[None]:
        """Fetch the keys now if none are loaded (ahead of traffic)."""
        if not self._set.keys:
            yield from self._refresh(self._clock())

    def _refresh(self, now: float) -> Flow[_KeySet]:
        if now < self._failed_until:
            if self._set.keys and now < self._set.stale_at:
                return self._set
            raise metadata_failure("signing keys", self._failed_until - now)
        keyset: _KeySet = yield _io.Shared(("authrelay.jwks", self.jwks_uri), self._fetch)
        return keyset

    def _fetch(self) -> Flow[_KeySet]:
        # Another caller may have refreshed while this one waited to lead.
        current = self._set
        now = self._clock()
        if (
            now < current.fetched_at + min(self.refresh_cooldown, self.ttl)
            and now < current.stale_at
        ):
            return current
        try:
            keys = yield from self._download()
        except IdentityProviderUnavailable:
            now = self._clock()
            self._failed_until = now + _FAILURE_TTL
            if current.keys and now >= current.stale_at:
                logger.error(
                    "jwks_too_stale jwks_uri=%s; refusing tokens until the keys can be fetched",
                    self.jwks_uri,
                )
                self._set = _EMPTY
            elif current.keys:
                logger.warning(
                    "jwks_refresh_failed jwks_uri=%s; keeping %d keys",
                    self.jwks_uri,
                    len(current.keys),
                )
                # a failed refetch still counts against the cooldown (JW-13)
                self._set = _KeySet(
                    current.keys,
                    current.by_kid,
                    now,
                    now + self.refresh_cooldown,
                    current.stale_at,
                )
                return self._set
            raise
        by_kid = {key.kid: key for key in keys if key.kid is not None}
        now = self._clock()
        self._set = _KeySet(keys, by_kid, now, now + self.ttl, now + self.http.jwks_max_stale)
        logger.info("jwks_fetched jwks_uri=%s keys=%d", self.jwks_uri, len(keys))
        return self._set

    def _download(self) -> Flow[tuple[Key, ...]]:
        request = httpx.Request("GET", self.jwks_uri, headers={"Accept": "application/json"})
        try:
            response = yield from _io.send(
                request,
                max_bytes=self.http.max_metadata_bytes,
                total_timeout=self.http.metadata_timeout,
            )
        except (_io.TransportFailure, _io.ResponseTooLarge) as exc:
            logger.warning(
                "jwks_fetch_failed jwks_uri=%s reason=%s", self.jwks_uri, type(exc).__name__
            )
            raise metadata_failure("signing keys", _FAILURE_TTL) from None
        if response.status_code != 200:
            logger.warning(
                "jwks_fetch_failed jwks_uri=%s status=%d", self.jwks_uri, response.status_code
            )
            raise metadata_failure("signing keys", _FAILURE_TTL)
        try:
            return parse_jwks(
                parse_object(response.content, max_bytes=self.http.max_metadata_bytes)
            )
        except ValueError:
            logger.warning("jwks_fetch_failed jwks_uri=%s reason=malformed", self.jwks_uri)
            raise metadata_failure("signing keys", _FAILURE_TTL) from None


def _match(keyset: _KeySet, kid: str | None, alg: str) -> tuple[Key, ...]:
    if kid is not None:
        key = keyset.by_kid.get(kid)
        return (key,) if key is not None and key_fits(key, alg) else ()
    return tuple(key for key in keyset.keys if key_fits(key, alg))[:MAX_CANDIDATES]
