"""One configured connector at run time: endpoints, client authentication, token requests.

Defends against:

- endpoints from anywhere but configuration or validated discovery (TR-01): static
  URLs are checked with :func:`~authrelay.identity.discovery.check_endpoint_url` at
  start; discovered ones were checked by :class:`~authrelay.identity.discovery.Discovery`
  (which also requires the exact issuer, ID-01);
- secrets mangled in ``client_secret_basic`` (AC-09): id and secret are form-urlencoded
  before base64 (RFC 6749 §2.3.1);
- oversized or slow token responses (TR-03): the driver caps body size and total time;
- token responses that are not usable bearer tokens: anything but a JSON object with a
  string ``access_token`` and ``token_type`` Bearer is an upstream error.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

from .. import _io
from .._io import Flow
from .._json import parse_object
from .._types import Clock
from ..errors import ConfigurationError, UpstreamError, UpstreamTimeout
from ..identity.discovery import Discovery, UnsafeEndpoint, check_endpoint_url
from ..identity.jwks import JwksCache
from ..identity.jwt import check_algorithms
from ..observability import Stats, token_request_metrics
from ..settings import ConnectorSettings, HttpSettings
from ..tokens.client_auth import ClientAuthenticator
from ..tokens.endpoint import delay_seconds
from ..tokens.model import usable_token
from .metadata import ConnectorMetadata
from .presets import MICROSOFT_MULTI_TENANT, PRESETS, STANDARD_METADATA, Preset, map_fields

__all__ = ["Connector", "Endpoints", "TokenEndpointError", "TokenResponse"]

logger = logging.getLogger("authrelay.connectors")

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where a connector's provider is reached (validated URLs)."""

    authorization: str
    token: str
    userinfo: str | None = None
    jwks_uri: str | None = None
    revocation: str | None = None
    end_session: str | None = None
    iss_parameter_supported: bool = False
    pushed_authorization_request: str | None = None
    """The PAR endpoint (RFC 9126 §5)."""
    require_pushed_authorization_requests: bool = False


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """A successful token endpoint answer (RFC 6749 §5.1); tokens are out of ``repr``."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: float | None
    refresh_token: str | None = field(default=None, repr=False)
    scope: str | None = None
    id_token: str | None = field(default=None, repr=False)


class TokenEndpointError(Exception):
    """The token endpoint answered with an OAuth error (RFC 6749 §5.2) or a bad status."""

    def __init__(self, code: str, status: int, retry_after: int | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.retry_after = retry_after

    @property
    def oauth_error(self) -> str:
        """The code, named as on authrelay's errors (:func:`~authrelay.errors.failure_code`)."""
        return self.code


class Connector:
    """A configured connector: a preset or a standard ``oauth2``/``oidc`` instance."""

    def __init__(
        self,
        name: str,
        settings: ConnectorSettings,
        *,
        http: HttpSettings,
        clock: Clock = time.time,
        metrics: Stats | None = None,
    ) -> None:
        self.name = name
        self.metrics = metrics
        self.settings = settings
        self.http = http
        self._clock = clock
        preset: Preset | None = PRESETS[settings.preset] if settings.preset else None
        self.preset = preset
        self.kind = preset.standard if preset else settings.standard or "oauth2"
        self.client_id = settings.client_id
        self.tenant = settings.tenant or (preset.default_tenant if preset else None)
        base = preset.metadata if preset else STANDARD_METADATA[self.kind]
        self.metadata = ConnectorMetadata(
            id=base.id,
            target=settings.target or (base.target if preset else name),
            type=settings.type,
            platform=settings.platform,
            name={**base.name, **(settings.name or {})}
            if preset
            else dict(settings.name or {name: name}),
            description={**base.description, **(settings.description or {})},
            logo=settings.logo or base.logo,
            logo_dark=settings.logo_dark or base.logo_dark,
            is_standard=base.is_standard,
            readme=base.readme,
            config_template=base.config_template,
        )
        self.target = self.metadata.target
        self.scopes: tuple[str, ...] = tuple(
            settings.scopes
            if settings.scopes is not None
            else (
                preset.scopes
                if preset
                else (("openid", "profile", "email") if self.kind == "oidc" else ())
            )
        )
        if self.kind == "oidc" and "openid" not in self.scopes:
            self.scopes = ("openid", *self.scopes)
        if settings.userinfo_mapping:
            self.map_profile = map_fields(settings.userinfo_mapping)
        else:
            self.map_profile = preset.map_profile if preset else map_fields({})
        self.algorithms = check_algorithms([settings.id_token_signed_response_alg])
        self.multi_tenant = (
            preset is not None
            and preset.metadata.id == "microsoft"
            and (self.tenant in MICROSOFT_MULTI_TENANT)
        )
        self.issuer = self._url(settings.issuer or (preset.issuer if preset else None))
        self._static = self._static_endpoints(preset)
        use_discovery = self.kind == "oidc" and settings.discovery and not self.multi_tenant
        if settings.par is True and not (
            use_discovery or self._static["pushed_authorization_request"]
        ):
            raise ConfigurationError(
                f"connectors.{name}.pushed_authorization_request_endpoint: required with "
                "par = true when the endpoints are not discovered"
            )
        self.discovery: Discovery | None = None
        try:
            if use_discovery and self.issuer:
                self.discovery = Discovery(self.issuer, http=http, clock=clock)
        except UnsafeEndpoint as exc:
            raise ConfigurationError(f"connectors.{name}.issuer: {exc}") from None
        self._jwks: dict[str, JwksCache] = {}
        self.auth = ClientAuthenticator(settings, clock=clock, where=f"connectors.{name}")
        audience = settings.client_assertion_audience or (
            preset.assertion_audience if preset else "issuer"
        )
        self._assertion_issuer = self.issuer if audience == "issuer" else None

    def __repr__(self) -> str:
        return f"Connector(name={self.name!r}, kind={self.kind!r}, target={self.target!r})"

    def _url(self, template: str | None) -> str | None:
        if template is None:
            return None
        return template.replace("{tenant}", self.tenant or "common")

    def _static_endpoints(self, preset: Preset | None) -> dict[str, str | None]:
        s = self.settings
        found: dict[str, str | None] = {
            "authorization": s.authorization_endpoint
            or (preset.authorization_endpoint if preset else None),
            "token": s.token_endpoint or (preset.token_endpoint if preset else None),
            "userinfo": s.userinfo_endpoint or (preset.userinfo_endpoint if preset else None),
            "jwks_uri": s.jwks_uri or (preset.jwks_uri if preset else None),
            "revocation": s.revocation_endpoint or (preset.revocation_endpoint if preset else None),
            "end_session": s.end_session_endpoint
            or (preset.end_session_endpoint if preset else None),
            "pushed_authorization_request": s.pushed_authorization_request_endpoint,
        }
        for key, value in list(found.items()):
            url = self._url(value or None)
            if url is not None:
                try:
                    check_endpoint_url(url, self.http)
                except UnsafeEndpoint as exc:
                    field = key if key == "jwks_uri" else f"{key}_endpoint"
                    raise ConfigurationError(f"connectors.{self.name}.{field}: {exc}") from None
            found[key] = url
        return found

    # -- endpoints and keys -------------------------------------------------------------

    def endpoints(self) -> Flow[Endpoints]:
        """The provider's endpoints: configuration first, then validated discovery."""
        static = self._static
        doc: Mapping[str, Any] = {}
        if self.discovery is not None:
            doc = yield from self.discovery.document()
        authorization = static["authorization"] or doc.get("authorization_endpoint")
        token = static["token"] or doc.get("token_endpoint")
        if not isinstance(authorization, str) or not isinstance(token, str):
            raise UpstreamError(
                "the provider publishes no authorization or token endpoint", connector=self.name
            )

        def pick(key: str, meta: str) -> str | None:
            value = static[key] or doc.get(meta)
            return value if isinstance(value, str) else None

        return Endpoints(
            authorization=authorization,
            token=token,
            userinfo=pick("userinfo", "userinfo_endpoint"),
            jwks_uri=pick("jwks_uri", "jwks_uri"),
            revocation=pick("revocation", "revocation_endpoint"),
            end_session=pick("end_session", "end_session_endpoint"),
            # RFC 9207 §3
            iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported")
            is True,
            pushed_authorization_request=pick(  # RFC 9126 §5
                "pushed_authorization_request", "pushed_authorization_request_endpoint"
            ),
            require_pushed_authorization_requests=doc.get("require_pushed_authorization_requests")
            is True,
        )

    def jwks(self, uri: str) -> JwksCache:
        """The key cache for ``uri`` (one per connector and URL)."""
        cache = self._jwks.get(uri)
        if cache is None:
            cache = self._jwks[uri] = JwksCache(uri, http=self.http, clock=self._clock)
        return cache

    def expected_issuer(self, claims: Mapping[str, Any]) -> str | None:
        """The issuer an ID token must name (exact; multi-tenant Microsoft uses ``tid``)."""
        if self.multi_tenant:
            tid = claims.get("tid")
            if not isinstance(tid, str) or not _GUID.fullmatch(tid):
                return None
            return f"https://login.microsoftonline.com/{tid}/v2.0"
        return self.issuer

    # -- token endpoint -----------------------------------------------------------------

    def token_request(
        self, url: str, data: dict[str, str], *, audience: str | None = None
    ) -> httpx.Request:
        """A POST to the token (revocation, PAR) endpoint with client authentication.

        ``private_key_jwt`` assertions name the issuer as ``aud`` when there is one
        (AC-11), else ``audience`` or ``url``; each carries a fresh ``jti`` and lives 60 s.
        """
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        form = dict(data)
        self.auth.apply(
            form, headers, token_endpoint=audience or url, issuer=self._assertion_issuer
        )
        return httpx.Request("POST", url, headers=headers, content=urlencode(form).encode())

    def call_token_endpoint(
        self, url: str, data: dict[str, str], *, retry: bool = False
    ) -> Flow[TokenResponse]:
        """POST a grant. Raises :class:`TokenEndpointError`, ``UpstreamError``/``Timeout``.

        Code redemption is never retried (AC-08). With ``retry`` (refresh), one retry
        happens only when the request provably did not reach the server, or on 429/503
        (RT-04); never after a read timeout or a 500.
        """
        grant_type = data.get("grant_type", "")
        with token_request_metrics(self.metrics, self.name, "connector", grant_type):
            response: TokenResponse = yield from self._call_token_endpoint(url, data, retry)
        return response

    def _call_token_endpoint(
        self, url: str, data: dict[str, str], retry: bool
    ) -> Flow[TokenResponse]:
        attempts = 2 if retry else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            if self.metrics is not None:
                self.metrics.incr("token_endpoint_calls", target=self.name, flow="connector")
            try:
                response = yield from _io.send(
                    self.token_request(url, data),
                    max_bytes=self.http.max_token_bytes,
                    total_timeout=self.http.token_timeout,
                )
            except _io.TransportFailure as exc:
                if not exc.reached and not last:
                    yield _io.Sleep(0.5)
                    continue
                if exc.timeout:
                    raise UpstreamTimeout(
                        "the token endpoint did not answer in time", connector=self.name
                    ) from None
                raise UpstreamError(
                    "the token endpoint could not be reached", connector=self.name
                ) from None
            except _io.ResponseTooLarge:
                raise UpstreamError(
                    "the token endpoint's answer is too large", connector=self.name
                ) from None
            try:
                return parse_token_response(response, self.name)
            except TokenEndpointError as exc:
                if exc.status in (429, 503) and not last:
                    yield _io.Sleep(min(float(exc.retry_after or 1), 2.0))
                    continue
                raise
        raise UpstreamError("the token endpoint failed", connector=self.name)


def parse_token_response(response: httpx.Response, connector: str) -> TokenResponse:
    """Validate a token endpoint response (RFC 6749 §5.1, §5.2)."""
    try:
        data = parse_object(response.content, max_bytes=len(response.content))
    except ValueError:
        data = None
    if response.status_code != 200:
        code = data.get("error") if isinstance(data, dict) else None
        if response.status_code in (400, 401) and isinstance(code, str) and code:
            raise TokenEndpointError(code[:64], response.status_code)
        raise TokenEndpointError("server_error", response.status_code, delay_seconds(response))
    if not isinstance(data, dict):
        raise UpstreamError("the token endpoint's answer is not JSON", connector=connector)
    access = data.get("access_token")
    token_type = data.get("token_type")
    if not isinstance(access, str) or not access:
        raise UpstreamError("the token endpoint's answer has no access token", connector=connector)
    if not usable_token(access):  # RFC 6749 A.12, RFC 6750 §2.1
        raise UpstreamError(
            "the token endpoint issued an unusable access token", connector=connector
        )
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise UpstreamError("the token endpoint issued an unusable token type", connector=connector)
    expires_in = data.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or expires_in < 0:
        expires_in = None
    refresh = data.get("refresh_token")
    if isinstance(refresh, str) and refresh and not usable_token(refresh):
        raise UpstreamError(
            "the token endpoint issued an unusable refresh token", connector=connector
        )
    scope = data.get("scope")
    id_token = data.get("id_token")
    return TokenResponse(
        access_token=access,
        token_type="Bearer",
        expires_in=float(expires_in) if expires_in is not None else None,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        scope=scope if isinstance(scope, str) else None,
        id_token=id_token if isinstance(id_token, str) and id_token else None,
    )
