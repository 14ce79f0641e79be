"""Settings sections for identity: session cookie, bearer tokens, routes, store, HTTP."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from ._base import Section
from .urls import is_loopback_host

__all__ = [
    "AdminSettings",
    "BearerSettings",
    "ClientSettings",
    "Duration",
    "DurationOrZero",
    "EventsSettings",
    "HttpSettings",
    "RoutesSettings",
    "SessionSettings",
    "StoreSettings",
    "WholeSeconds",
]

DEFAULT_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
_ASYMMETRIC = {
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "ES256K", "EdDSA", "Ed25519",
}  # fmt: skip

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _seconds(value: object) -> object:
    """``"10m"``, ``"90s"``, ``"2h"``, ``"7d"`` or a number of seconds → seconds."""
    if isinstance(value, str):
        text = value.strip().lower()
        unit = _UNITS.get(text[-1:]) if text else None
        number = text[:-1] if unit is not None else text
        try:
            return float(number) * (unit or 1.0)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a duration; write a number of seconds or e.g. '90s', "
                "'10m', '2h', '7d'"
            ) from None
    return value


_UNITS_OR_SECONDS = BeforeValidator(_seconds)

Duration = Annotated[float, _UNITS_OR_SECONDS, Field(gt=0)]
"""Seconds, or a string with a unit: ``"90s"``, ``"10m"``, ``"2h"``, ``"7d"``."""

DurationOrZero = Annotated[float, _UNITS_OR_SECONDS, Field(ge=0)]
"""A :data:`Duration` that may also be 0."""

WholeSeconds = Annotated[int, _UNITS_OR_SECONDS]
"""A duration in whole seconds (cookie ``Max-Age``, JWT leeway): ``600`` or ``"10m"``."""


class SessionSettings(Section):
    """The session cookie: encrypted and authenticated, tokens never inside (SE-02, SE-03)."""

    cookie_name: str | None = None
    """Defaults to ``__Host-authrelay`` (``authrelay`` when ``dev_insecure_cookies``)."""
    max_age: Annotated[WholeSeconds, Field(gt=0)] = 12 * 3600
    """Absolute timeout in seconds (SE-05), counted from sign-in."""
    idle_timeout: Annotated[WholeSeconds, Field(gt=0)] = 30 * 60
    """Idle timeout in seconds (SE-05); activity renews the cookie (rolling)."""
    renew_after: Annotated[WholeSeconds, Field(ge=0)] = 60
    """Re-issue the cookie at most once per this many seconds of activity."""
    same_site: Literal["lax", "strict"] = "lax"
    dev_insecure_cookies: bool = False
    """Allow the cookie over plain http (no ``Secure``, no ``__Host-`` prefix): local dev only."""

    @property
    def effective_cookie_name(self) -> str:
        """The cookie name in use."""
        if self.cookie_name:
            return self.cookie_name
        return "authrelay" if self.dev_insecure_cookies else "__Host-authrelay"

    @model_validator(mode="after")
    def _check(self) -> SessionSettings:
        name = self.cookie_name
        if name is not None and name.startswith("__Host-") and self.dev_insecure_cookies:
            raise ValueError(
                "cookie_name: a __Host- cookie needs Secure, drop the prefix for insecure dev"
            )
        if self.idle_timeout > self.max_age:
            raise ValueError("idle_timeout: cannot exceed max_age")
        return self


class ClientSettings(Section):
    """The app's own OAuth client at the bearer issuer (used by token flows)."""

    client_id: str
    client_secret: SecretStr | None = None
    token_endpoint_auth_method: Literal[
        "client_secret_basic", "client_secret_post", "private_key_jwt"
    ] = "client_secret_basic"
    private_key: SecretStr | None = None
    """PEM or JWK JSON of the key for ``private_key_jwt`` (RFC 7523)."""
    private_key_id: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ClientSettings:
        check_credentials(self.token_endpoint_auth_method, self.client_secret, self.private_key)
        return self


def check_credentials(method: str, secret: SecretStr | None, key: SecretStr | None) -> None:
    """Raise when ``method`` lacks its secret or key (the message names the field)."""
    if method == "private_key_jwt":
        if key is None:
            raise ValueError("private_key: required with private_key_jwt")
    elif method != "none" and secret is None:
        raise ValueError(f"client_secret: required with {method} (or private_key_jwt)")


class BearerSettings(Section):
    """Accept API callers with bearer tokens: JWTs checked by JWKS, or opaque via RFC 7662."""

    issuer: str
    """Exact issuer identifier (JW-05); its discovery document gives the JWKS."""
    audience: list[str]
    """Accepted ``aud`` values; one of them must be in the token (JW-06)."""
    algorithms: list[str] = list(DEFAULT_ALGORITHMS)
    profile: Literal["rfc9068", "legacy"] = "rfc9068"
    leeway: Annotated[WholeSeconds, Field(ge=0, le=300)] = 30
    required_scopes: list[str] = []
    jwks_uri: str | None = None
    """Skip discovery and use this JWKS URL (must be on the issuer's origin or configured)."""
    discovery: bool = True
    introspection_endpoint: str | None = None
    """Enables opaque tokens (RFC 7662); a JWT-shaped token is still checked locally."""
    introspection_client: ClientSettings | None = None
    """Credentials for introspection; defaults to the top-level ``client``."""
    introspection_cache_ttl: Annotated[WholeSeconds, Field(ge=0)] = 60
    introspection_negative_ttl: Annotated[WholeSeconds, Field(ge=0, le=10)] = 10
    jwks_refresh_cooldown: Annotated[WholeSeconds, Field(ge=1)] = 30
    cache_size: Annotated[int, Field(ge=1)] = 10_000
    accept_form_body: bool = False
    """RFC 6750 §2.2 form-encoded body tokens; off by default (BR-02)."""

    @field_validator("audience", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("audience")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value or any(not a for a in value):
            raise ValueError("at least one non-empty audience is required")
        return value

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        for alg in value:
            if alg.lower() == "none":
                raise ValueError("'none' is never accepted (RFC 8725 §3.2)")
            if alg not in _ASYMMETRIC:
                raise ValueError(
                    f"{alg!r} is not an asymmetric JWS algorithm; HMAC is never used with "
                    "keys from a JWKS (RFC 8725 §3.1)"
                )
        if not value:
            raise ValueError("at least one algorithm is required")
        return value


class RoutesSettings(Section):
    """Where the connector routes live and where users land."""

    prefix: str = "/auth"
    after_login: str = "/"
    after_logout: str = "/"
    login_redirect: bool = True
    """Browsers hitting a protected route are redirected to login (else 401)."""
    default_connector: str | None = None
    stats: bool = False
    """Serve ``GET {prefix}/stats`` (counters, no secrets)."""
    allowed_redirect_origins: list[str] = []
    """Exact ``scheme://host[:port]`` origins an absolute ``next`` may point to (RD-01)."""

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/") or "//" in value:
            raise ValueError("prefix must start with '/' and not end with '/' (e.g. '/auth')")
        return value

    @field_validator("after_login", "after_logout")
    @classmethod
    def _local(cls, value: str) -> str:
        if not value.startswith("/") or value.startswith("//") or "\\" in value:
            raise ValueError("must be a same-origin path starting with a single '/'")
        return value


REDIS_SCHEMES = (
    "redis://",
    "rediss://",
    "redis+sentinel://",
    "rediss+sentinel://",
    "redis+cluster://",
    "rediss+cluster://",
)
"""Store URL schemes served by the Redis backend (one server, Sentinel, Cluster)."""
STORE_SCHEMES = ("memory://", "sqlite:///", *REDIS_SCHEMES)


class StoreSettings(Section):
    """Where sessions, links and tokens live; values are encrypted at rest (ST-01)."""

    url: str = "memory://"
    key_prefix: str = "authrelay:"
    timeout: Duration = 0.5
    """Per-operation timeout (Redis 0.5 s; SQLite uses a 5 s busy timeout) (ST-08)."""
    replica_acks: Annotated[int, Field(ge=0, le=16)] = 0
    """Redis with replicas: after each write, wait (``WAIT``, at most 80 % of ``timeout``)
    until this many replicas have it, so a failover does not lose it; fewer in time is
    logged (``store_write_not_replicated``), the write stands. One server or Sentinel."""

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(STORE_SCHEMES):
            raise ValueError(f"unsupported store url; use one of {', '.join(STORE_SCHEMES)}")
        if value.startswith(REDIS_SCHEMES[2:]):
            from ..stores.redis_scripts import parse_multi_host_url

            parse_multi_host_url(value)  # a malformed Sentinel or Cluster url fails at start
        return value

    @model_validator(mode="after")
    def _acks(self) -> StoreSettings:
        if self.replica_acks and not self.url.startswith(REDIS_SCHEMES[:4]):
            raise ValueError(
                "replica_acks: needs a Redis server or Sentinel url (redis://, rediss://, "
                "redis+sentinel://): Cluster and the other stores cannot WAIT for replicas"
            )
        return self


class HttpSettings(Section):
    """Limits for calls to identity providers (TR-03)."""

    connect_timeout: Duration = 3.0
    token_timeout: Duration = 10.0
    metadata_timeout: Duration = 5.0
    max_metadata_bytes: Annotated[int, Field(gt=0)] = 512 * 1024
    max_token_bytes: Annotated[int, Field(gt=0)] = 64 * 1024
    jwks_max_stale: Duration = 24 * 3600.0
    """Longest a JWKS is used after its last successful fetch while refetches fail; after
    that, tokens get 503 rather than trust keys the issuer may have revoked."""
    allow_insecure_loopback: bool = False
    """Allow ``http://`` identity providers and ``public_base_url`` on loopback addresses
    (tests, demo); elsewhere they must be ``https``."""


class AdminSettings(Section):
    """The connector admin API under ``{routes.prefix}/admin/connectors`` (off by default)."""

    enabled: bool = False
    scope: Annotated[str, Field(min_length=1, pattern=r"^[\x21\x23-\x5b\x5d-\x7e]+$")] = (
        "authrelay.admin"
    )
    """The scope a caller's bearer token must carry; a session cookie is never enough."""
    refresh_interval: Annotated[Duration, Field(le=300)] = 5.0
    """Seconds a worker trusts its copy of the connector records before it checks the store
    again (one read); on Redis a change is also heard at once through invalidation."""


class EventsSettings(Section):
    """``[events]``: send token events to a webhook (HMAC-signed JSON, at least once)."""

    url: str
    """Where events are POSTed: ``https://``, or ``http://`` on a loopback host."""
    secret: SecretStr
    """Signs each delivery (``X-Authrelay-Signature``, HMAC-SHA256); at least 16 bytes."""
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 10
    """Deliveries of one event before it is dead-lettered (kept, logged, not retried)."""
    backoff: Duration = 2.0
    """Wait before the first retry; doubles per attempt, at most 10 minutes."""
    timeout: Duration = 5.0
    """Per delivery (connect, send, answer)."""
    poll_interval: Duration = 5.0
    """How often each process looks for queued events (new ones are sent at once)."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        loopback = parts.hostname is not None and is_loopback_host(parts.hostname)
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ValueError("must be an https:// URL (http:// only on a loopback host)")
        if not parts.hostname:
            raise ValueError("must name a host")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < 16:
            raise ValueError("must be at least 16 bytes")
        return value
