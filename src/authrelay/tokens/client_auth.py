"""Client authentication at a token endpoint (RFC 6749 §2.3, RFC 7523 §2.2).

Defends against:

- secrets with reserved characters breaking ``client_secret_basic``: the client id and
  secret are form-urlencoded before base64 (RFC 6749 §2.3.1, AC-09);
- replayable or long-lived ``private_key_jwt`` assertions: each has a fresh ``jti``, an
  ``exp`` at most 60 s ahead and ``aud`` = the issuer identifier when one is known
  (AC-11), else the token endpoint URL;
- key material in ``repr`` or logs: the authenticator prints only the client id.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import MutableMapping
from typing import Any, Protocol
from urllib.parse import quote_plus

from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key
from pydantic import SecretStr

from .._crypto import random_token
from .._types import Clock
from ..errors import ConfigurationError

__all__ = ["ClientAuthenticator", "ClientCredentials"]

_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_ASSERTION_LIFETIME = 60


class ClientCredentials(Protocol):
    """What a client's settings give (``ClientSettings``, ``ConnectorSettings``)."""

    @property
    def client_id(self) -> str: ...
    @property
    def client_secret(self) -> SecretStr | None: ...
    @property
    def token_endpoint_auth_method(self) -> str: ...
    @property
    def private_key(self) -> SecretStr | None: ...
    @property
    def private_key_id(self) -> str | None: ...


def _load_key(
    pem_or_jwk: str, key_id: str | None, where: str
) -> tuple[RSAKey | ECKey | OKPKey, str]:
    text = pem_or_jwk.strip()
    try:
        key: Any
        if text.startswith("{"):
            key = import_key(json.loads(text))
        else:
            key = None
            for kind in ("RSA", "EC", "OKP"):
                try:
                    key = import_key(text, kind)
                    break
                except Exception:  # noqa: S112 - try the next key type
                    continue
            if key is None:
                raise ValueError("unrecognised key")
    except Exception:
        raise ConfigurationError(f"{where}.private_key: not a PEM or JWK private key") from None
    if not key.is_private:
        raise ConfigurationError(f"{where}.private_key: a public key was given")
    if isinstance(key, RSAKey):
        alg = "RS256"
    elif isinstance(key, ECKey):
        alg = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}.get(
            str(key.get("crv")), "ES256"
        )
    elif isinstance(key, OKPKey):
        alg = "EdDSA"
    else:
        raise ConfigurationError(f"{where}.private_key: unsupported key type")
    if key_id:
        key = import_key({**key.as_dict(private=True), "kid": key_id})
    alg = str(key.get("alg") or alg)
    return key, alg


class ClientAuthenticator:
    """Adds one client's credentials to token requests; built once per client."""

    __slots__ = ("_alg", "_basic", "_clock", "_key", "_secret", "client_id", "method")

    def __init__(
        self, client: ClientCredentials, *, clock: Clock = time.time, where: str = "client"
    ) -> None:
        self.client_id = client.client_id
        self.method = client.token_endpoint_auth_method
        self._clock = clock
        self._secret = client.client_secret.get_secret_value() if client.client_secret else None
        self._basic: str | None = None
        self._key: RSAKey | ECKey | OKPKey | None = None
        self._alg = "RS256"
        if self.method == "client_secret_basic":
            assert self._secret is not None
            # RFC 6749 §2.3.1: form-urlencode both parts before base64.
            pair = f"{quote_plus(self.client_id)}:{quote_plus(self._secret)}"
            self._basic = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        elif self.method == "private_key_jwt":
            assert client.private_key is not None
            self._key, self._alg = _load_key(
                client.private_key.get_secret_value(), client.private_key_id, where
            )

    def __repr__(self) -> str:
        return f"ClientAuthenticator(client_id={self.client_id!r}, method={self.method!r})"

    def apply(
        self,
        form: MutableMapping[str, str],
        headers: MutableMapping[str, str],
        *,
        token_endpoint: str,
        issuer: str | None,
    ) -> None:
        """Authenticate the request whose body is ``form`` and headers ``headers``."""
        if self._basic is not None:
            headers["Authorization"] = self._basic
        elif self.method == "client_secret_post":
            form["client_id"] = self.client_id
            form["client_secret"] = self._secret or ""
        elif self.method == "none":  # a public client (RFC 6749 §2.1): PKCE guards the code
            form["client_id"] = self.client_id
        else:
            form["client_id"] = self.client_id
            form["client_assertion_type"] = _ASSERTION_TYPE
            form["client_assertion"] = self.assertion(issuer or token_endpoint)

    def assertion(self, audience: str) -> str:
        """A fresh RFC 7523 §3 client assertion for ``audience``."""
        assert self._key is not None
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "jti": random_token(16),
            "iat": now,
            "exp": now + _ASSERTION_LIFETIME,
        }
        header: dict[str, Any] = {"alg": self._alg, "typ": "JWT"}
        kid = self._key.kid
        if kid:
            header["kid"] = kid
        return jwt.encode(header, claims, self._key, algorithms=[self._alg])
