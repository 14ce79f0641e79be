"""Bearer tokens at the resource side: who is calling, proven by a JWT or by introspection.

:class:`BearerVerifier` is what the middleware calls. ``cached(token)`` answers from the
verified-token cache with one SHA-256 and one dict lookup; ``verify(token)`` is the full
sans-IO flow: JWT-shaped tokens (three segments) are verified locally against the
issuer's JWKS (:mod:`.jwt`, :mod:`.jwks`, :mod:`.discovery`), anything else goes to RFC
7662 introspection when configured (:mod:`.introspection`).

Defends against: accepting a token for another issuer, audience or token kind (the rules
of :mod:`.jwt`), a verdict outliving its token (cache entries expire at ``exp``; RFC 7662
answers per IN-05), a token lacking the required scopes slipping through the cache (the
entry remembers the missing scopes), and an identity-provider outage read as "invalid"
(503 :class:`IdentityProviderUnavailable`, never 401). Error descriptions never repeat
token contents or claims (BR-05); logs carry fingerprints only.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._crypto import fingerprint_of
from .._io import Flow
from ..errors import (
    AuthRelayError,
    ConfigurationError,
    IdentityProviderUnavailable,
    InsufficientScope,
    InvalidToken,
)
from ..observability import Stats, bounded
from ..principal import Credentials, Principal
from ..settings import Settings
from .discovery import Discovery, ProviderMetadata, UnsafeEndpoint, check_endpoint_url
from .introspection import Introspector
from .jwks import JwksCache
from .jwt import JwtValidator, access_token_rules, check_algorithms
from .tokencache import TokenCache

__all__ = ["BearerVerifier", "scopes_of"]

logger = logging.getLogger("authrelay.bearer")

_Verified = tuple[Principal, Credentials]
_Verdict = tuple["_Verified | None", tuple[str, ...]]
"""``(principal and credentials, or None for a negatively cached token; missing scopes)``."""


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """Scopes granted by a token: ``scope`` (space-separated, RFC 9068 §2.2.3) or ``scp``."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, str):
        return frozenset(scp.split())
    if isinstance(scp, list):
        return frozenset(item for item in scp if isinstance(item, str) and item)
    return frozenset()


class BearerVerifier:
    """Verifies bearer tokens for ``settings.bearer`` and caches the verdicts.

    Build once per relay; safe to share between threads and tasks. Time comes from
    ``clock`` (seconds since the epoch).
    """

    __slots__ = (
        "_algorithms",
        "_cache",
        "_clock",
        "_discovery",
        "_entries",
        "_introspector",
        "_jwks",
        "_required",
        "_rules",
        "_validator",
        "hits",
        "metrics",
        "settings",
    )

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        bearer = settings.bearer
        if bearer is None:
            raise ConfigurationError("bearer: BearerVerifier needs the [bearer] settings")
        self.settings = settings
        self._clock = clock
        http = settings.http
        where = "bearer.issuer"
        try:
            check_endpoint_url(bearer.issuer, http)
            where = "bearer.jwks_uri"
            jwks_uri = check_endpoint_url(bearer.jwks_uri, http) if bearer.jwks_uri else None
        except UnsafeEndpoint as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
        if jwks_uri is None and not bearer.discovery:
            raise ConfigurationError("bearer.jwks_uri: required when bearer.discovery is off")
        self._algorithms = check_algorithms(bearer.algorithms)
        self._rules = access_token_rules(
            bearer.issuer, bearer.audience, profile=bearer.profile, leeway=bearer.leeway
        )
        self._discovery = (
            Discovery(bearer.issuer, http=http, clock=clock) if bearer.discovery else None
        )
        self._jwks: JwksCache | None = None
        self._validator: JwtValidator | None = None
        if jwks_uri is not None:
            self._use_jwks(jwks_uri)
        self._introspector: Introspector | None = None
        if bearer.introspection_endpoint:
            client = bearer.introspection_client or settings.client
            if client is None:
                raise ConfigurationError(
                    "bearer.introspection_client: introspection needs client credentials "
                    "(bearer.introspection_client or client)"
                )
            self._introspector = Introspector(
                bearer.introspection_endpoint,
                client=client,
                http=http,
                issuer=bearer.issuer,
                audiences=bearer.audience,
                leeway=bearer.leeway,
                cache_ttl=bearer.introspection_cache_ttl,
                negative_ttl=bearer.introspection_negative_ttl,
                clock=clock,
            )
        self._required = tuple(bearer.required_scopes)
        self._cache: TokenCache[_Verdict] = TokenCache(bearer.cache_size, clock=clock)
        self._entries = self._cache.entries
        self.hits = 0  # verdicts answered from the cache (a plain int: no lock on that path)
        self.metrics: Stats | None = None

    def __repr__(self) -> str:
        issuer = self.settings.bearer.issuer if self.settings.bearer else None
        return f"BearerVerifier(issuer={issuer!r}, cached={len(self._cache)})"

    def cached(self, token: str, *, key: bytes | None = None) -> _Verified | None:
        """The cached verdict for ``token`` (no I/O, no lock), or None on a miss.

        ``key`` is the token's cache key when the caller has it already
        (:func:`~authrelay.identity.tokencache.token_key`). Raises :class:`InvalidToken`
        for a token recently found inactive, and :class:`InsufficientScope` for a valid
        token lacking the required scopes.
        """
        entry = self._entries.get(key or hashlib.sha256(token.encode()).digest())
        if entry is None or entry[0] <= self._clock():
            return None
        verified, missing = entry[1]
        if verified is None:
            raise InvalidToken(reason="inactive")
        if missing:
            raise InsufficientScope(scopes=self._required)
        self.hits += 1
        return verified

    def verify(self, token: str, *, key: bytes | None = None) -> Flow[_Verified]:
        """Fully verify ``token`` (a flow); fill the cache; return principal and credentials.

        ``key`` as for :meth:`cached`. Raises :class:`InvalidToken` (401),
        :class:`InsufficientScope` (403) or
        :class:`~authrelay.errors.IdentityProviderUnavailable` (503, ``retry_after`` set).
        """
        metrics = self.metrics
        if metrics is None:
            verified: _Verified = yield from self._verify(token, key)
            return verified
        try:
            verified = yield from self._verify(token, key)
        except AuthRelayError as exc:
            metrics.incr("bearer_verifications", flow=bounded(exc.error))
            raise
        metrics.incr("bearer_verifications", flow="valid")
        return verified

    def _verify(self, token: str, key: bytes | None) -> Flow[_Verified]:
        if key is None:
            key = hashlib.sha256(token.encode()).digest()
        if key in self._entries:
            hit = self.cached(token, key=key)
            if hit is not None:
                return hit
        dots = token.count(".")
        if dots == 2:
            validator = self._validator
            if validator is None:
                validator = yield from self._jwt_validator()
            verified = yield from validator.verify(token)
            claims = verified.claims
            expires_at: float | None = float(claims["exp"])
            cache_until = float(claims["exp"])
        elif dots == 4:
            raise InvalidToken("encrypted tokens (JWE) are not accepted", reason="jwe")
        elif self._introspector is not None:
            result = yield from self._introspector.introspect(token)
            if not result.active:
                logger.info(
                    "bearer_rejected reason=%s token=%s", result.reason, fingerprint_of(token)
                )
                self._cache.put(key, result.cache_until, (None, ()))
                raise InvalidToken(reason=result.reason)
            claims = result.claims
            exp = claims.get("exp")
            expires_at = float(exp) if isinstance(exp, int | float) else None
            cache_until = result.cache_until
        else:
            raise InvalidToken("the token is not a JWT", reason="malformed")
        subject = claims.get("sub", claims.get("client_id"))
        issuer = claims.get("iss", self._rules.issuer)
        scopes = scopes_of(claims)
        principal = Principal(
            subject=subject if isinstance(subject, str) else None,
            kind="bearer",
            issuer=issuer if isinstance(issuer, str) else self._rules.issuer,
            claims=claims,  # read-only already (MappingProxyType from jwt / introspection)
        )
        pair = (principal, Credentials(scopes=scopes, token=token, expires_at=expires_at))
        missing = tuple(s for s in self._required if s not in scopes) if self._required else ()
        self._cache.put(key, cache_until, (pair, missing))
        if missing:
            raise InsufficientScope(scopes=self._required)
        return pair

    def metadata(self) -> Flow[Mapping[str, Any]]:
        """The issuer's validated discovery document (cached by :class:`Discovery`)."""
        if self._discovery is not None:
            document = yield from self._discovery.document()
            return document
        bearer = self.settings.bearer
        assert bearer is not None
        data: dict[str, Any] = {"issuer": bearer.issuer, "jwks_uri": bearer.jwks_uri}
        if bearer.introspection_endpoint:
            data["introspection_endpoint"] = bearer.introspection_endpoint
        return ProviderMetadata(data)

    def warm(self) -> Flow[None]:
        """Fetch discovery and JWKS now, ahead of traffic (optional)."""
        yield from self._jwt_validator()
        assert self._jwks is not None
        yield from self._jwks.warm()

    def _jwt_validator(self) -> Flow[JwtValidator]:
        if self._validator is not None:
            return self._validator
        assert self._discovery is not None
        document = yield from self._discovery.document()
        jwks_uri = document.jwks_uri
        if jwks_uri is None:
            raise IdentityProviderUnavailable(
                "the identity provider's metadata has no jwks_uri", retry_after=60
            )
        return self._validator or self._use_jwks(jwks_uri)

    def _use_jwks(self, jwks_uri: str) -> JwtValidator:
        bearer = self.settings.bearer
        assert bearer is not None
        self._jwks = JwksCache(
            jwks_uri,
            http=self.settings.http,
            clock=self._clock,
            refresh_cooldown=bearer.jwks_refresh_cooldown,
        )
        self._validator = JwtValidator(
            keys=self._jwks, algorithms=self._algorithms, rules=self._rules, clock=self._clock
        )
        return self._validator
