"""Signing keys of the test identity provider and the JWS work done with them.

Defends against tests that pass by accident: every key is pinned to exactly one algorithm
(``alg`` in its JWK, RFC 8725 §3.1), the published JWKS never contains private members, and
"other" keys used for negative tests are never published, so a client that skips signature
checks fails against this provider.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Mapping
from typing import Any, Literal

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeyParameters, KeySet, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

__all__ = ["KeyChoice", "SigningKeys"]

SigningKey = RSAKey | ECKey | OKPKey
KeyChoice = Literal["current", "other", "old"] | Any


def _generate(alg: str) -> SigningKey:
    kid = f"{alg.lower()}-{secrets.token_hex(6)}"
    params: KeyParameters = {"kid": kid, "alg": alg, "use": "sig"}
    if alg in ("RS256", "PS256"):
        return RSAKey.generate_key(2048, params)
    if alg == "ES256":
        return ECKey.generate_key("P-256", params)
    if alg == "EdDSA":
        return OKPKey.generate_key("Ed25519", params)
    raise ValueError(f"unsupported signing alg {alg!r}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class SigningKeys:
    """Current, retired and unpublished keys, one per algorithm."""

    def __init__(self, algs: tuple[str, ...]) -> None:
        if not algs:
            raise ValueError("key_algs must name at least one algorithm")
        self._lock = threading.Lock()
        self.algs = algs
        self._current: dict[str, SigningKey] = {alg: _generate(alg) for alg in algs}
        self._retired: list[SigningKey] = []
        self._other: dict[str, SigningKey] = {}
        self._key_set: KeySet | None = None
        self._jwks: dict[str, Any] | None = None

    def current(self, alg: str) -> SigningKey:
        """The key that signs with ``alg`` now."""
        try:
            return self._current[alg]
        except KeyError:
            raise ValueError(f"no signing key for alg {alg!r}; key_algs={self.algs}") from None

    def rotate(self, *, keep_old: bool = True) -> None:
        """New keys (new ``kid``) for every alg; old public keys stay published if asked."""
        fresh = {alg: _generate(alg) for alg in self.algs}
        with self._lock:
            if keep_old:
                self._retired = [*self._current.values(), *self._retired][: 2 * len(self.algs)]
            else:
                self._retired = []
            self._current = fresh
            self._key_set = None
            self._jwks = None

    def drop_retired(self) -> None:
        """Remove retired keys from the JWKS."""
        with self._lock:
            self._retired = []
            self._key_set = None
            self._jwks = None

    def resolve(self, choice: KeyChoice, alg: str) -> Any:
        """Map ``"current" | "old" | "other" | key`` to a key object for ``alg``."""
        if choice == "current":
            return self.current(alg)
        if choice == "old":
            for key in self._retired:
                if key.get("alg") == alg:
                    return key
            raise ValueError("no retired key for this alg: call rotate_keys() first")
        if choice == "other":
            with self._lock:
                if alg not in self._other:
                    self._other[alg] = _generate(alg)
                return self._other[alg]
        return choice

    def published(self) -> list[SigningKey]:
        """Keys whose public halves are in the JWKS (current first)."""
        with self._lock:
            return [*self._current.values(), *self._retired]

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set (RFC 7517 §5), private members never included."""
        cached = self._jwks
        if cached is None:
            cached = {"keys": [key.as_dict(private=False) for key in self.published()]}
            self._jwks = cached
        return {"keys": [dict(k) for k in cached["keys"]]}

    def key_set(self) -> KeySet:
        """Public keys as a joserfc KeySet, for verifying this provider's own tokens."""
        cached = self._key_set
        if cached is None:
            cached = KeySet.import_key_set(self.jwks())  # type: ignore[arg-type]
            self._key_set = cached
        return cached

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        alg: str = "RS256",
        key: KeyChoice = "current",
        typ: str | None = "JWT",
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A compact JWS over ``claims``. ``alg="none"`` gives an unsigned token."""
        header: dict[str, Any] = {"alg": alg}
        if typ is not None:
            header["typ"] = typ
        key_obj = None
        if alg.lower() != "none":
            key_obj = self.resolve(key, alg) if isinstance(key, str) else key
            kid = getattr(key_obj, "kid", None)
            if isinstance(key, str) and key == "other":
                # Borrow the current kid, so clients fail on the signature, not the lookup.
                kid = self.current(alg).kid
            if kid:
                header["kid"] = kid
        # Headers are merged last and unchecked, so negative tests can forge any header
        # (``crit``, a lying ``alg``, ``jku``); the signature always uses ``alg``.
        header.update(headers or {})
        header = {k: v for k, v in header.items() if v is not None}
        signing_input = (
            _b64(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64(json.dumps(dict(claims), separators=(",", ":")).encode())
        )
        if key_obj is None:
            return signing_input + "."
        signature = JWSRegistry.algorithms[alg].sign(signing_input.encode("ascii"), key_obj)
        return signing_input + "." + _b64(signature)

    def verify(self, token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Header and claims of a token signed by a published key, else None."""
        try:
            obj = jws.deserialize_compact(
                token, self.key_set(), algorithms=list(self.algs), registry=_VERIFY_REGISTRY
            )
            claims = json.loads(obj.payload or b"")
        except (JoseError, ValueError, TypeError):
            return None
        if not isinstance(claims, dict):
            return None
        return dict(obj.headers()), claims


_VERIFY_REGISTRY = JWSRegistry(strict_check_header=True)
