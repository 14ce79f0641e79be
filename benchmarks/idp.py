"""A minimal identity provider for the benchmarks: discovery, JWKS and a counted token endpoint.

It runs on a loopback port (uvicorn in a thread) so that authrelay fetches discovery and
keys over real HTTP, exactly once, before timing starts. The token endpoint counts its
calls and can answer after a fixed delay, standing in for a real provider's latency in
the cold-start storm. Tokens are minted with joserfc; the raw ``cryptography`` keys are
kept for the signature-verify floor.

Defends against benchmark mistakes, not attackers: tokens carry every claim the RFC 9068
profile requires, so a "first sight" figure is a real, successful verification.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["AUDIENCE", "BenchIdP", "raw_verifier"]

AUDIENCE = "api://bench"


@dataclass
class BenchIdP:
    """Provider state; :attr:`app` serves it. ``issuer`` is set once the server is up."""

    issuer: str = ""
    token_delay: float = 0.0
    token_calls: int = 0
    rsa: RSAKey = field(
        default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
    )
    ec: ECKey = field(
        default_factory=lambda: ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
    )

    @property
    def app(self) -> Starlette:
        """The provider's ASGI app."""
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/jwks", self._jwks),
                Route("/token", self._token, methods=["POST"]),
                Route("/count", self._count),
            ]
        )

    def mint(self, alg: str = "RS256", *, sub: str = "alice", lifetime: int = 3600) -> str:
        """A valid RFC 9068 access token for :data:`AUDIENCE`."""
        key: RSAKey | ECKey = self.rsa if alg == "RS256" else self.ec
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": sub,
            "aud": AUDIENCE,
            "client_id": "bench-client",
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
            "scope": "orders.read",
        }
        header = {"alg": alg, "typ": "at+jwt", "kid": key.kid}
        return jwt.encode(header, claims, key, algorithms=[alg])

    async def _discovery(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "jwks_uri": f"{self.issuer}/jwks",
                "token_endpoint": f"{self.issuer}/token",
            }
        )

    async def _jwks(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {"keys": [self.rsa.as_dict(private=False), self.ec.as_dict(private=False)]}
        )

    async def _count(self, request: Request) -> JSONResponse:
        return JSONResponse({"token_calls": self.token_calls})

    async def _token(self, request: Request) -> JSONResponse:
        self.token_calls += 1
        form = parse_qs((await request.body()).decode())
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        body: dict[str, Any] = {
            "access_token": "at-" + secrets.token_urlsafe(32),
            "token_type": "Bearer",
            "expires_in": 3600,
        }
        if form.get("grant_type") == ["urn:ietf:params:oauth:grant-type:token-exchange"]:
            body["issued_token_type"] = "urn:ietf:params:oauth:token-type:access_token"
        return JSONResponse(body, headers={"cache-control": "no-store"})


def raw_verifier(idp: BenchIdP, token: str) -> Any:
    """A zero-argument callable doing only ``cryptography``'s verify of ``token``'s signature.

    Key parsed once, signature decoded once: the cost no JWT library can go below.
    """
    import base64

    head, payload, sig = token.split(".")
    signing_input = f"{head}.{payload}".encode()
    signature = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    alg = _alg_of(head)
    if alg == "RS256":
        public = idp.rsa.public_key
        pkcs1 = padding.PKCS1v15()
        sha = hashes.SHA256()

        def verify_rsa() -> None:
            public.verify(signature, signing_input, pkcs1, sha)

        return verify_rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    der = encode_dss_signature(r, s)
    ec_public = idp.ec.public_key
    ecdsa = ec.ECDSA(hashes.SHA256())

    def verify_ec() -> None:
        ec_public.verify(der, signing_input, ecdsa)

    return verify_ec


def _alg_of(header_b64: str) -> str:
    import base64
    import json

    raw = base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4))
    return str(json.loads(raw)["alg"])
