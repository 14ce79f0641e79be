"""RFC 7662 token introspection for opaque bearer tokens.

Defends against:

- treating a truthy-but-not-true answer as active (IN-02): only the JSON boolean
  ``true`` counts; ``"true"``, ``1``, ``null`` or a missing member are inactive;
- accepting tokens the authorization server vouches for but that are not meant for this
  API (IN-03): ``exp``/``nbf`` are enforced, ``iss`` and ``aud`` must match the
  configuration, and refresh tokens (``token_type``) are refused;
- failing open or failing "logged out" when the endpoint misbehaves (IN-04): 5xx,
  timeouts, oversized or malformed answers are 503 and never cached; a 401/403 means our
  own client credentials are wrong, which is logged as ``introspection_auth_failed``
  (at most once a minute per endpoint, with the count of failures held back since);
- leaking the token: it is sent only in the POST body to the configured endpoint, and
  logs carry a fingerprint at most.

This module computes *how long* an answer may be cached (IN-05: positive ≤ min(exp - now,
``cache_ttl``), negative ≤ ``negative_ttl``); the caller keeps the SHA-256-keyed, bounded
cache (:class:`authrelay.identity.tokencache.TokenCache`).
"""

from __future__ import annotations

import base64
import logging
import math
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import quote_plus

import httpx

from .. import _io
from .._crypto import fingerprint_of
from .._io import Flow
from .._json import parse_object
from .._types import Clock
from ..errors import ConfigurationError, IdentityProviderUnavailable
from ..settings import ClientSettings, HttpSettings
from .discovery import UnsafeEndpoint, check_endpoint_url

__all__ = ["IntrospectionResult", "Introspector", "basic_authorization"]

logger = logging.getLogger("authrelay.introspection")
AUTH_FAILURE_LOG_INTERVAL = 60.0
"""Seconds between two ``introspection_auth_failed`` ERROR logs of one endpoint."""

_ACCESS_TOKEN_TYPES = frozenset(
    {"access_token", "bearer", "urn:ietf:params:oauth:token-type:access_token"}
)
_RETRY_AFTER = 5
_MAX_TIME = 2**53


def basic_authorization(client_id: str, secret: str) -> str:
    """``client_secret_basic``: form-urlencode id and secret, then base64 (RFC 6749 §2.3.1)."""
    raw = f"{quote_plus(client_id, safe='')}:{quote_plus(secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode("utf-8")).decode("ascii")


@dataclass(frozen=True, slots=True)
class IntrospectionResult:
    """The verdict on one token: ``active`` with claims, and until when it may be cached.

    ``cache_until`` is an absolute time (clock seconds); ``cache_until <= now`` means the
    answer must not be cached. ``reason`` says why an inactive verdict was reached.
    """

    active: bool
    claims: Mapping[str, Any]
    cache_until: float
    reason: str = ""

    def __repr__(self) -> str:
        return f"IntrospectionResult(active={self.active!r}, reason={self.reason!r})"


class Introspector:
    """Asks an RFC 7662 endpoint about opaque tokens, as a sans-IO flow.

    ``client`` authenticates the resource server (``client_secret_basic`` or
    ``client_secret_post``); ``issuer`` and ``audiences``, when given, must match the
    answer's ``iss`` and ``aud``.
    """

    __slots__ = (
        "_auth_failures",
        "_auth_header",
        "_clock",
        "_form_auth",
        "audiences",
        "cache_ttl",
        "endpoint",
        "http",
        "issuer",
        "leeway",
        "negative_ttl",
    )

    def __init__(
        self,
        endpoint: str,
        *,
        client: ClientSettings,
        http: HttpSettings,
        issuer: str | None = None,
        audiences: Collection[str] = (),
        leeway: float = 30,
        cache_ttl: float = 60,
        negative_ttl: float = 10,
        clock: Clock = time.time,
    ) -> None:
        try:
            self.endpoint = check_endpoint_url(endpoint, http)
        except UnsafeEndpoint as exc:
            raise ConfigurationError(f"bearer.introspection_endpoint: {exc}") from None
        if client.client_secret is None or client.token_endpoint_auth_method not in (
            "client_secret_basic",
            "client_secret_post",
        ):
            raise ConfigurationError(
                "bearer.introspection_client: introspection supports client_secret_basic "
                "and client_secret_post"
            )
        secret = client.client_secret.get_secret_value()
        self._auth_header: str | None = None
        self._form_auth: tuple[tuple[str, str], ...] = ()
        if client.token_endpoint_auth_method == "client_secret_basic":
            self._auth_header = basic_authorization(client.client_id, secret)
        else:
            self._form_auth = (("client_id", client.client_id), ("client_secret", secret))
        self.http = http
        self.issuer = issuer
        self.audiences = frozenset(audiences)
        self.leeway = leeway
        self.cache_ttl = cache_ttl
        self.negative_ttl = min(negative_ttl, 10.0)  # IN-05
        self._clock = clock
        self._auth_failures = [float("-inf"), 0]  # last ERROR logged, failures not logged since

    def __repr__(self) -> str:
        return f"Introspector(endpoint={self.endpoint!r})"

    def introspect(self, token: str) -> Flow[IntrospectionResult]:
        """POST the token to the endpoint and judge the answer (IN-01 … IN-04).

        Raises :class:`IdentityProviderUnavailable` (503) when no verdict can be had.
        """
        # RFC 7662 §2.1
        form = [("token", token), ("token_type_hint", "access_token"), *self._form_auth]
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        if self._auth_header is not None:
            headers["Authorization"] = self._auth_header
        request = httpx.Request("POST", self.endpoint, headers=headers, content=_encode_form(form))
        try:
            response = yield from _io.send(
                request,
                max_bytes=min(self.http.max_token_bytes, 64 * 1024),
                total_timeout=self.http.metadata_timeout,
            )
        except (_io.TransportFailure, _io.ResponseTooLarge) as exc:
            logger.warning(
                "introspection_unavailable reason=%s token=%s",
                type(exc).__name__,
                fingerprint_of(token),
            )
            raise _unavailable() from None
        status = response.status_code
        if status in (401, 403):  # RFC 7662 §2.3: our own credentials were refused (IN-04)
            self._auth_failed(status)
            raise _unavailable()
        if status != 200:
            logger.warning("introspection_unavailable status=%d", status)
            raise _unavailable()
        try:
            data = parse_object(response.content, max_bytes=self.http.max_token_bytes)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            logger.warning("introspection_unavailable reason=malformed")
            raise _unavailable()
        return self.judge(data)

    def _auth_failed(self, status: int) -> None:
        """One ERROR per :data:`AUTH_FAILURE_LOG_INTERVAL` at most, with what it held back."""
        now = self._clock()
        failures = self._auth_failures
        if now - failures[0] < AUTH_FAILURE_LOG_INTERVAL:
            failures[1] += 1
            return
        suppressed = int(failures[1])
        failures[0], failures[1] = now, 0
        logger.error(
            "introspection_auth_failed status=%d endpoint=%s suppressed=%d",
            status,
            self.endpoint,
            suppressed,
        )

    def judge(self, data: Mapping[str, Any]) -> IntrospectionResult:
        """Turn an introspection response object into a verdict (IN-02, IN-03, IN-05)."""
        now = self._clock()
        negative_until = now + self.negative_ttl
        if data.get("active") is not True:  # RFC 7662 §2.2: JSON true only (IN-02)
            return IntrospectionResult(False, _EMPTY, negative_until, "inactive")
        try:
            exp = _time(data, "exp")
            nbf = _time(data, "nbf")
        except ValueError:
            return IntrospectionResult(False, _EMPTY, negative_until, "time_claim")
        if exp is not None and now > exp + self.leeway:
            return IntrospectionResult(False, _EMPTY, negative_until, "expired")
        if nbf is not None and nbf > now + self.leeway:
            return IntrospectionResult(False, _EMPTY, negative_until, "not_yet_valid")
        token_type = data.get("token_type")
        if token_type is not None and (
            not isinstance(token_type, str) or token_type.lower() not in _ACCESS_TOKEN_TYPES
        ):
            return IntrospectionResult(False, _EMPTY, negative_until, "token_type")
        if self.issuer is not None and "iss" in data and data["iss"] != self.issuer:
            return IntrospectionResult(False, _EMPTY, negative_until, "issuer")
        if self.audiences and not _audience_ok(data.get("aud"), self.audiences):
            return IntrospectionResult(False, _EMPTY, negative_until, "audience")
        subject = data.get("sub", data.get("client_id"))
        if not isinstance(subject, str) or not subject:
            return IntrospectionResult(False, _EMPTY, negative_until, "subject")
        cache_until = now + self.cache_ttl
        if exp is not None:
            cache_until = min(cache_until, exp)
        return IntrospectionResult(True, MappingProxyType(dict(data)), cache_until)


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _unavailable() -> IdentityProviderUnavailable:
    return IdentityProviderUnavailable(
        "the token introspection endpoint is unavailable", retry_after=_RETRY_AFTER
    )


def _encode_form(form: list[tuple[str, str]]) -> bytes:
    return "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in form).encode("ascii")


def _time(data: Mapping[str, Any], name: str) -> float | None:
    if name not in data:
        return None
    value = data[name]
    if type(value) not in (int, float) or not math.isfinite(value) or not 0 <= value <= _MAX_TIME:
        raise ValueError(name)
    return float(value)


def _audience_ok(aud: Any, audiences: frozenset[str]) -> bool:
    values = [aud] if isinstance(aud, str) else aud
    if not isinstance(values, list) or not values:
        return False
    if not all(isinstance(v, str) and v for v in values):
        return False
    return not audiences.isdisjoint(values)
