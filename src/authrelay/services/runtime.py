"""One downstream service, compiled once from settings: origin, cache, pooled clients.

Defends against (DS-01, DS-02, DS-04, SK-01, ST-06):

- credentials sent to the wrong place: a credential is attached only to requests whose
  scheme, host and port equal the service's configured origin, and a request hook strips
  it again from any redirect hop that leaves that origin (httpx itself strips only
  ``Authorization``; an API key may sit in another header or the query);
- cross-principal bleed through the pooled client: its cookie jar refuses every cookie,
  so a ``Set-Cookie`` from the downstream for one user is never sent for another, and
  the caller's own ``Authorization``/``Cookie`` are never copied (only configured
  default headers, which may not name either);
- silently disabled TLS: ``insecure_skip_verify`` logs a WARNING when the service is built;
- token-bearing cache keys: keys hold names, sorted scopes and SHA-256 digests only.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Hashable, Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import ConfigurationError
from ..principal import Credentials, Principal
from ..settings import ClientSettings, ServiceSettings
from ..tokens import AccessToken, ClientAuthenticator, TokenCache
from .options import CallOptions

if TYPE_CHECKING:
    from . import ServiceRegistry

__all__ = ["ServiceRuntime", "origin_of"]

logger = logging.getLogger("authrelay.services")

CREDENTIAL_MARK = "authrelay.credential"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_FORBIDDEN_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})

Origin = tuple[str, str, int]


def origin_of(url: httpx.URL) -> Origin:
    """``(scheme, host, port)`` with the default port filled in."""
    scheme = url.scheme
    return scheme, url.host, url.port or _DEFAULT_PORTS.get(scheme, 0)


def _no_cookies() -> CookieJar:
    # An empty allow-list blocks every domain: nothing is stored, nothing is replayed.
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


TRANSIENT_RETRIES = 2
"""Retries of an idempotent request answered 429/502/503/504 (with ``retry_idempotent``)."""


class ServiceRuntime:
    """Everything about one service that is built once per relay and shared by requests."""

    def __init__(self, registry: ServiceRegistry, name: str, settings: ServiceSettings) -> None:
        relay = registry.relay
        self.registry = registry
        self.name = name
        self.settings = settings
        self.flow = settings.flow
        self.clock = relay.clock
        self.base_url = settings.base_url
        base = httpx.URL(settings.base_url)
        self.origin = origin_of(base)
        # What httpx would join a relative "/path" to, as a string: joining here saves the
        # client a second parse of the whole URL per call (None: let httpx join).
        self.url_prefix: str | None = None
        if not base.query and not base.fragment:
            path = base.raw_path if base.raw_path.endswith(b"/") else base.raw_path + b"/"
            self.url_prefix = str(base.copy_with(raw_path=path))
        self.scopes = tuple(sorted(set(settings.scopes)))
        self.margin = float(settings.expiry_margin)
        self.cache = TokenCache(settings.cache_size, settings.cache_bytes, clock=relay.clock)
        self.hits = 0
        """Warm-cache hits, counted without a lock (read through ``relay.metrics``)."""
        self.retry_on_401 = settings.retry_on_401 and settings.flow not in ("api_key", "forward")
        self.transient_retries = TRANSIENT_RETRIES if settings.retry_idempotent else 0
        for header in settings.headers:
            if header.lower() in _FORBIDDEN_HEADERS:
                raise ConfigurationError(
                    f"services.{name}.headers: {header!r} may not be set as a default header"
                )
        client = settings.client or relay.settings.client
        self.client_settings: ClientSettings | None = client
        self.auth: ClientAuthenticator | None = (
            ClientAuthenticator(
                client,
                clock=relay.clock,
                where=f"services.{name}.client" if settings.client else "client",
            )
            if client is not None
            else None
        )
        endpoint = settings.token_endpoint
        if endpoint is not None and "{tenant}" in endpoint and settings.tenant is None:
            raise ConfigurationError(
                f"services.{name}.token_endpoint: has {{tenant}} but services.{name}.tenant "
                "is not set"
            )
        self.api_key_header: str | None = None
        self.api_key_param: str | None = None
        self.static_header: str | None = None
        if settings.flow == "api_key":
            key = settings.api_key
            assert key is not None
            value = key.value.get_secret_value()
            if key.query_param:
                self.api_key_param = key.query_param
                self.static_header = value
            else:
                self.api_key_header = key.header
                self.static_header = f"{key.scheme} {value}" if key.scheme else value
        self.subject_mode = settings.subject
        self.session_connector: str | None = None
        """The connector whose user token is this service's session subject, if any."""
        if settings.insecure_skip_verify:
            logger.warning("tls_verification_disabled service=%s (DS-04)", name)
        self._lock = threading.Lock()
        self._async: httpx.AsyncClient | None = None
        self._sync: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"ServiceRuntime(name={self.name!r}, flow={self.flow!r}, base_url={self.base_url!r})"

    # -- the subject of an exchange (TX-04) -----------------------------------------

    def bind_subject(self, issuers: Mapping[str, str | None]) -> list[str]:
        """Choose the session-subject connector among ``issuers`` (name → issuer).

        Only a connector whose issuer is the exchange's authorization server (the
        ``bearer.issuer``) or listed in ``subject_issuers`` qualifies. Returns problems.
        """
        settings = self.settings
        if self.flow not in ("token_exchange", "on_behalf_of") or self.subject_mode == "bearer":
            return []
        where = f"services.{self.name}"
        bearer = self.registry.relay.settings.bearer
        trusted = set(settings.subject_issuers)
        if bearer is not None:  # the token endpoint's issuer (see acquire.token_endpoint)
            trusted.add(bearer.issuer)
        name = settings.subject_connector
        if name is not None:
            if name not in issuers:
                return [f"{where}.subject_connector: {name!r} is not a configured connector"]
            if issuers[name] not in trusted:
                return [
                    f"{where}.subject_connector: {name!r} is from another issuer than the "
                    f"exchange's authorization server; list its issuer in "
                    f"{where}.subject_issuers only if that server trusts it"
                ]
            self.session_connector = name
            return []
        candidates = sorted(n for n, issuer in issuers.items() if issuer in trusted)
        if len(candidates) > 1:
            problem = (
                f"{where}.subject_connector: connectors {', '.join(candidates)} could all "
                "give the session subject; name one"
            )
            if self.subject_mode == "session":
                return [problem]
            # "auto" keeps working for bearer callers, as before session subjects existed.
            logger.warning("%s (until then, session users get 401)", problem)
            return []
        if candidates:
            self.session_connector = candidates[0]
        elif self.subject_mode == "session":
            return [
                f"{where}.subject: 'session' needs a connector whose issuer is the exchange's "
                f"authorization server (or is in {where}.subject_issuers)"
            ]
        return []

    def subject_of(self, principal: Principal, credentials: Credentials) -> str | None:
        """``"bearer"``, ``"session"`` or None: which token this caller's exchange uses.

        A bearer caller only ever gives its bearer token (a cookie beside it is ignored);
        a session caller only its connector token; ``subject`` may rule either out.
        """
        if principal.kind == "bearer":
            return "bearer" if self.subject_mode != "session" and credentials.token else None
        if principal.kind == "session":
            usable = self.session_connector is not None and principal.session_id is not None
            return "session" if usable and self.subject_mode != "bearer" else None
        return None

    # -- cache keys (ST-06, TX-03, CL-01) -------------------------------------------

    def effective_flow(self, options: CallOptions) -> str:
        """The flow a call with ``options`` uses (``app_token`` forces client credentials)."""
        if options.app_token and self.flow in ("token_exchange", "on_behalf_of", "forward"):
            return "client_credentials"
        return self.flow

    def key(
        self, principal: Principal, credentials: Credentials, options: CallOptions
    ) -> Hashable | None:
        """The cache key of a call, or None for credentials that are never cached."""
        flow = self.effective_flow(options)
        if flow == "forward":
            return None
        if flow == "api_key":
            return ("api_key",)
        scopes = options.scopes if options.scopes is not None else self.scopes
        tenant = options.tenant or self.settings.tenant
        actor = options.actor if options.actor is not None else self.settings.actor
        params = options.token_endpoint_params
        if flow == "client_credentials":
            # App-only: shared by every caller; an actor here is the client acting, and
            # an agent user (Entra) is the subject of the token.
            agent_user = (options.agent_user, options.agent_user_id)
            if agent_user != (None, None):
                return (flow, agent_user, None, scopes, tenant, options.actor, params)
            return (flow, None, None, scopes, tenant, options.actor, params)
        if flow == "connector":
            subject = (principal.issuer, principal.subject, principal.session_id)
            return (flow, subject, self.settings.connector, scopes, tenant, None, params)
        if self.subject_of(principal, credentials) == "session":
            # Keyed by the session: a derived token dies with it (docs/security.md TX-04).
            assert principal.session_id is not None
            session = self.registry.relay.sessions.record_key(principal.session_id)
            caller = ("session", session, principal.subject)
            return (flow, caller, self.session_connector, scopes, tenant, actor, params)
        token = credentials.token
        digest = hashlib.sha256(token.encode()).digest() if token else None
        return (flow, (principal.issuer, principal.subject), digest, scopes, tenant, actor, params)

    # -- where credentials go (DS-01) ----------------------------------------------

    def same_origin(self, url: httpx.URL) -> bool:
        """True when ``url`` is on the service's configured origin."""
        return origin_of(url) == self.origin

    def attach(self, request: httpx.Request, header: str) -> None:
        """Put the credential on ``request`` (header, or query parameter for API keys)."""
        request.extensions[CREDENTIAL_MARK] = True
        if self.api_key_param is not None:
            request.url = request.url.copy_set_param(self.api_key_param, header)
        else:
            request.headers[self.api_key_header or "Authorization"] = header

    def _strip_foreign(self, request: httpx.Request) -> None:
        if request.extensions.get(CREDENTIAL_MARK) and not self.same_origin(request.url):
            if self.api_key_param is not None:
                request.url = request.url.copy_remove_param(self.api_key_param)
            request.headers.pop(self.api_key_header or "Authorization", None)
            request.headers.pop("Authorization", None)

    async def _strip_foreign_async(self, request: httpx.Request) -> None:
        self._strip_foreign(request)

    def header_for(self, token: AccessToken) -> str:
        """The ``Authorization`` value for ``token``."""
        return f"Bearer {token.value}"

    # -- pooled clients (one per service per process and mode) ---------------------

    def _client_options(self) -> dict[str, Any]:
        settings = self.settings
        return {
            "base_url": settings.base_url,
            "headers": settings.headers,
            "timeout": settings.timeout,
            "cookies": _no_cookies(),
            "follow_redirects": False,
        }

    def _limits(self) -> httpx.Limits:
        return httpx.Limits(max_connections=self.settings.max_connections)

    @property
    def async_client(self) -> httpx.AsyncClient:
        """The pooled async client, made on first use."""
        client = self._async
        if client is None:
            with self._lock:
                client = self._async
                if client is None:
                    transport = self.registry.transports.get(self.name, (None, None))[0]
                    if transport is None:
                        transport = httpx.AsyncHTTPTransport(
                            verify=not self.settings.insecure_skip_verify,
                            limits=self._limits(),
                            retries=2 if self.settings.retry_idempotent else 0,
                        )
                    client = self._async = httpx.AsyncClient(
                        transport=transport,
                        event_hooks={"request": [self._strip_foreign_async]},
                        **self._client_options(),
                    )
        return client

    @property
    def sync_client(self) -> httpx.Client:
        """The pooled sync client, made on first use."""
        client = self._sync
        if client is None:
            with self._lock:
                client = self._sync
                if client is None:
                    transport = self.registry.transports.get(self.name, (None, None))[1]
                    if transport is None:
                        transport = httpx.HTTPTransport(
                            verify=not self.settings.insecure_skip_verify,
                            limits=self._limits(),
                            retries=2 if self.settings.retry_idempotent else 0,
                        )
                    client = self._sync = httpx.Client(
                        transport=transport,
                        event_hooks={"request": [self._strip_foreign]},
                        **self._client_options(),
                    )
        return client

    async def aclose(self) -> None:
        """Close the pooled clients."""
        client, self._async = self._async, None
        if client is not None:
            await client.aclose()
        self.close()

    def close(self) -> None:
        """Close the pooled sync client (the async one needs :meth:`aclose`)."""
        client, self._sync = self._sync, None
        if client is not None:
            client.close()
