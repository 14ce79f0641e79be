"""Issuer discovery: OpenID Connect Discovery 1.0 with the RFC 8414 fallback.

Defends against (ID-01, TR-01, TR-02, TR-03):

- a metadata document that names another issuer (mix-up, a compromised or misrouted
  host): its ``issuer`` must equal the configured issuer character for character;
- endpoints that point at plain ``http`` (token theft on the wire) or carry credentials
  or fragments: every endpoint URL in the document is checked by
  :func:`check_endpoint_url` before anyone uses it;
- oversized or drip-fed documents (body cap and total timeout via :mod:`authrelay._io`);
- an identity provider outage turning into a request storm: failures are remembered for
  a few seconds, and concurrent fetches are single-flight.

All I/O is yielded to the driver (:func:`authrelay._io.send`); nothing here blocks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import httpx
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.discovery import OpenIDProviderMetadata

from .. import _io
from .._io import Flow
from .._json import parse_object
from .._types import Clock
from ..errors import IdentityProviderUnavailable
from ..settings import HttpSettings
from ..settings.urls import is_loopback_host

__all__ = [
    "Discovery",
    "ProviderMetadata",
    "UnsafeEndpoint",
    "check_endpoint_url",
    "check_members",
    "is_loopback_host",
    "metadata_failure",
]

logger = logging.getLogger("authrelay.discovery")

_ENDPOINT_FIELDS = (
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "registration_endpoint",
    "introspection_endpoint",
    "revocation_endpoint",
    "end_session_endpoint",
    "device_authorization_endpoint",
    "pushed_authorization_request_endpoint",
)
_NOT_REQUIRED_OF_PROVIDERS = frozenset({"id_token_signing_alg_values_supported"})
"""Members whose authlib rule asks more of a provider than a relying party needs: OIDC
Discovery §3 wants RS256 listed for interoperability, while authrelay checks each ID
token's ``alg`` against the connector's own setting."""
_FAILURE_TTL = 5.0
"""Seconds a failed fetch is remembered (callers get 503 without a new request)."""


class UnsafeEndpoint(ValueError):
    """An identity-provider URL is not ``https`` (or allowed loopback ``http``) (TR-01)."""


def check_endpoint_url(url: str, http: HttpSettings) -> str:
    """Return ``url`` if it is safe to call an identity provider at, else raise.

    Requires an absolute ``https`` URL with a host, no user info and no fragment;
    ``http`` is allowed only for loopback hosts when ``http.allow_insecure_loopback``
    is set (TR-01). Raises :class:`UnsafeEndpoint` with a message naming the URL's
    problem (the URL itself is configuration or provider metadata, not a secret).
    """
    if not isinstance(url, str) or not url:
        raise UnsafeEndpoint("endpoint URL is missing or not a string")
    if any(ch in url for ch in "\r\n\t ") or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise UnsafeEndpoint("endpoint URL contains whitespace or control characters")
    if not url.isascii():  # RFC 3986: percent-encoded paths, punycode hosts
        raise UnsafeEndpoint(f"endpoint URL {url!r} is not ASCII (RFC 3986)")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise UnsafeEndpoint(f"endpoint URL {url!r} is not a valid URL") from None
    if not parsed.host:
        raise UnsafeEndpoint(f"endpoint URL {url!r} has no host")
    if parsed.userinfo:
        raise UnsafeEndpoint(f"endpoint URL {url!r} must not carry user info")
    if parsed.fragment:
        raise UnsafeEndpoint(f"endpoint URL {url!r} must not carry a fragment")
    if parsed.scheme == "https":
        return url
    if parsed.scheme == "http" and is_loopback_host(parsed.host):
        if http.allow_insecure_loopback:
            return url
        raise UnsafeEndpoint(
            f"endpoint URL {url!r} is plain http; set http.allow_insecure_loopback for "
            "loopback development"
        )
    raise UnsafeEndpoint(f"endpoint URL {url!r} must use https")


def metadata_failure(what: str, retry_after: float) -> IdentityProviderUnavailable:
    """The 503 raised when issuer metadata or keys cannot be obtained."""
    return IdentityProviderUnavailable(
        f"the identity provider's {what} is unavailable",
        retry_after=max(1, int(retry_after + 0.999)),
    )


class ProviderMetadata(Mapping[str, Any]):
    """A validated, read-only issuer metadata document (RFC 8414 §2, OIDC Discovery §3)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data: Mapping[str, Any] = MappingProxyType(dict(data))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"ProviderMetadata(issuer={self.issuer!r})"

    @property
    def issuer(self) -> str:
        """The issuer identifier (equal to the configured one)."""
        return str(self._data["issuer"])

    def endpoint(self, name: str) -> str | None:
        """A validated endpoint URL (``jwks_uri``, ``token_endpoint``, ...) or None."""
        value = self._data.get(name)
        return value if isinstance(value, str) else None

    @property
    def jwks_uri(self) -> str | None:
        """Where the issuer's signing keys are published."""
        return self.endpoint("jwks_uri")


def discovery_urls(issuer: str) -> tuple[str, str]:
    """The OIDC and RFC 8414 metadata URLs for ``issuer``.

    OIDC Discovery §4 appends ``/.well-known/openid-configuration`` to the issuer;
    RFC 8414 §3.1 inserts ``/.well-known/oauth-authorization-server`` between the host
    and the issuer's path.
    """
    base = issuer.rstrip("/")
    oidc = f"{base}/.well-known/openid-configuration"
    url = httpx.URL(issuer)
    path = url.path.rstrip("/")
    origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
    oauth = f"{origin}/.well-known/oauth-authorization-server{path}"
    return oidc, oauth


def check_members(data: dict[str, Any], *, oidc: bool) -> None:
    """Apply authlib's RFC 8414 (and, for ``oidc``, OIDC Discovery §3) rules to every
    registered member the document carries; raise :class:`ValueError` naming the member.

    Only members that are present are checked: a bearer-only issuer needs no
    ``authorization_endpoint`` or ``response_types_supported``, and the endpoints a
    connector needs are required where it uses them.
    """
    models: list[Any] = [AuthorizationServerMetadata(data)]
    if oidc:
        models.append(OpenIDProviderMetadata(data))
    for model in models:
        for name in model.REGISTRY_KEYS:
            if name in data and name not in _NOT_REQUIRED_OF_PROVIDERS:
                getattr(model, f"validate_{name}")()


def validate_metadata(
    data: Any, issuer: str, http: HttpSettings, *, oidc: bool = True
) -> ProviderMetadata:
    """Check a parsed metadata document; raise :class:`IdentityProviderUnavailable`.

    Our own checks come first and are stricter than authlib's: the issuer must equal the
    configured one exactly, and every endpoint must pass :func:`check_endpoint_url`
    (authlib accepts plain ``http`` on loopback hosts, or anywhere when
    ``AUTHLIB_INSECURE_TRANSPORT`` is set). Then :func:`check_members`.
    """
    if not isinstance(data, dict):
        raise IdentityProviderUnavailable(
            "the identity provider's metadata is not a JSON object", retry_after=int(_FAILURE_TTL)
        )
    # OIDC Discovery §4.3, RFC 8414 §3.3: exact match, no normalisation (ID-01)
    if data.get("issuer") != issuer:
        logger.error("discovery_issuer_mismatch configured=%s", issuer)
        raise IdentityProviderUnavailable(
            "the identity provider's metadata names a different issuer than the configured "
            f"one ({issuer}); refusing to use it",
            retry_after=60,
        )
    for name in _ENDPOINT_FIELDS:
        if name in data:
            try:
                check_endpoint_url(data[name], http)
            except UnsafeEndpoint as exc:
                logger.error("discovery_unsafe_endpoint field=%s issuer=%s", name, issuer)
                raise IdentityProviderUnavailable(
                    f"the identity provider's metadata has an unsafe {name}: {exc}",
                    retry_after=60,
                ) from None
    try:
        check_members(data, oidc=oidc)
    except ValueError as exc:
        logger.error("discovery_invalid_metadata issuer=%s problem=%s", issuer, exc)
        raise IdentityProviderUnavailable(
            f"the identity provider's metadata is invalid: {exc}", retry_after=60
        ) from None
    return ProviderMetadata(data)


class Discovery:
    """Fetches and caches one issuer's validated metadata document.

    ``document()`` is a flow: GET the OIDC configuration, fall back to RFC 8414 on a 4xx,
    validate (issuer equality, endpoint URLs), cache for ``ttl`` seconds. A failed
    fetch raises :class:`IdentityProviderUnavailable` and is remembered for a few
    seconds; once a document is known, a failed refresh keeps serving it.
    """

    __slots__ = ("_clock", "_doc", "_failed_until", "_fresh_until", "http", "issuer", "ttl")

    def __init__(
        self, issuer: str, *, http: HttpSettings, clock: Clock = time.time, ttl: float = 3600
    ) -> None:
        check_endpoint_url(issuer, http)
        self.issuer = issuer
        self.http = http
        self.ttl = ttl
        self._clock = clock
        self._doc: ProviderMetadata | None = None
        self._fresh_until = 0.0
        self._failed_until = 0.0

    def __repr__(self) -> str:
        return f"Discovery(issuer={self.issuer!r})"

    def cached(self) -> ProviderMetadata | None:
        """The last validated document, if any (no I/O)."""
        return self._doc

    def document(self) -> Flow[ProviderMetadata]:
        """The validated metadata document (fetched when missing or stale)."""
        now = self._clock()
        doc = self._doc
        if doc is not None and now < self._fresh_until:
            return doc
        if now < self._failed_until:
            if doc is not None:
                return doc
            raise metadata_failure("metadata", self._failed_until - now)
        result: ProviderMetadata = yield _io.Shared(
            ("authrelay.discovery", self.issuer), self._fetch
        )
        return result

    def _fetch(self) -> Flow[ProviderMetadata]:
        try:
            doc = yield from self._download()
        except IdentityProviderUnavailable:
            self._failed_until = self._clock() + _FAILURE_TTL
            if self._doc is not None:
                logger.warning(
                    "discovery_refresh_failed issuer=%s; keeping the last document", self.issuer
                )
                return self._doc
            raise
        self._doc = doc
        self._fresh_until = self._clock() + self.ttl
        return doc

    def _download(self) -> Flow[ProviderMetadata]:
        oidc_url, oauth_url = discovery_urls(self.issuer)
        response = yield from self._get(oidc_url)
        oidc = True
        if 400 <= response.status_code < 500 and response.status_code != 429:
            response = yield from self._get(oauth_url)
            oidc = False
        if response.status_code != 200:
            logger.warning(
                "discovery_failed issuer=%s status=%s", self.issuer, response.status_code
            )
            raise metadata_failure("metadata", _FAILURE_TTL)
        try:
            data = parse_object(response.content, max_bytes=self.http.max_metadata_bytes)
        except ValueError:
            logger.warning("discovery_failed issuer=%s reason=not_json", self.issuer)
            raise metadata_failure("metadata", _FAILURE_TTL) from None
        return validate_metadata(data, self.issuer, self.http, oidc=oidc)

    def _get(self, url: str) -> Flow[httpx.Response]:
        request = httpx.Request("GET", url, headers={"Accept": "application/json"})
        try:
            response = yield from _io.send(
                request,
                max_bytes=self.http.max_metadata_bytes,
                total_timeout=self.http.metadata_timeout,
            )
        except (_io.TransportFailure, _io.ResponseTooLarge) as exc:
            logger.warning("discovery_failed issuer=%s reason=%s", self.issuer, type(exc).__name__)
            raise metadata_failure("metadata", _FAILURE_TTL) from None
        return response
