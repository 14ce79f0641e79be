"""Settings of downstream services and of agents acting for users."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from ._base import Section
from .core import ClientSettings, Duration, DurationOrZero, WholeSeconds, check_credentials

__all__ = ["AgentSettings", "ApiKeySettings", "Flow", "ServiceSettings"]

Flow = Literal[
    "client_credentials", "token_exchange", "on_behalf_of", "forward", "api_key", "connector"
]


class AgentSettings(Section):
    """A workload or AI agent with its own client identity (its token is the RFC 8693 actor).

    ``kind = "entra"`` makes it a Microsoft Entra Agent ID agent identity: ``client_id``
    is the agent identity's app id, it has no credential of its own, and the service's
    client (the agent identity blueprint) authenticates for it through federated identity
    credentials; it can then also act as its agent user (``agent_user``/``agent_user_id``).
    """

    client_id: str
    kind: Literal["oauth", "entra"] = "oauth"
    """``oauth``: any IdP, the agent's token is the RFC 8693 ``actor_token``;
    ``entra``: an Entra Agent ID agent identity under the client's blueprint."""
    client_secret: SecretStr | None = None
    token_endpoint_auth_method: Literal[
        "client_secret_basic", "client_secret_post", "private_key_jwt"
    ] = "client_secret_basic"
    private_key: SecretStr | None = None
    scopes: list[str] = []
    audience: str | None = None
    token_endpoint: str | None = None

    @model_validator(mode="after")
    def _credentials(self) -> AgentSettings:
        if self.kind == "entra":
            if self.client_secret is not None or self.private_key is not None:
                raise ValueError(
                    "client_secret/private_key: an Entra agent identity has no credential of "
                    "its own (the blueprint, the service's client, authenticates for it)"
                )
            if self.token_endpoint_auth_method != "client_secret_basic":
                raise ValueError("token_endpoint_auth_method: not used with kind 'entra'")
            return self
        check_credentials(self.token_endpoint_auth_method, self.client_secret, self.private_key)
        return self

    def as_client(self) -> ClientSettings:
        """The agent's credentials as client settings."""
        return ClientSettings(
            client_id=self.client_id,
            client_secret=self.client_secret,
            token_endpoint_auth_method=self.token_endpoint_auth_method,
            private_key=self.private_key,
        )


class ApiKeySettings(Section):
    """A static secret sent in a header (or query parameter) (SK-01)."""

    value: SecretStr
    header: str = "Authorization"
    scheme: str | None = "Bearer"
    """Prefix before the key in the header (``None`` sends the bare key)."""
    query_param: str | None = None
    """Send in this query parameter instead of a header (discouraged)."""


class ServiceSettings(Section):
    """A downstream service and how its calls are authorized."""

    base_url: str
    flow: Flow
    scopes: list[str] = []
    audience: str | None = None
    """RFC 8693 ``audience`` / the ``aud`` a forwarded token must carry."""
    resource: str | None = None
    """RFC 8707 resource indicator sent to the token endpoint."""
    token_endpoint: str | None = None
    """Overrides the token endpoint found by the bearer issuer's discovery.

    May contain ``{tenant}``, replaced by ``tenant`` or a per-call tenant override."""
    tenant: str | None = None
    """Default tenant put in ``{tenant}`` of ``token_endpoint`` (Entra-style authorities)."""
    client: ClientSettings | None = None
    """Overrides the top-level ``client`` for this service."""
    connector: str | None = None
    """For ``flow = "connector"``: the connector whose user token is used."""
    actor: str | None = None
    """For token exchange: the agent (under ``[agents]``) acting for the user."""
    api_key: ApiKeySettings | None = None
    subject: Literal["bearer", "session", "auto"] = "auto"
    """For ``token_exchange`` / ``on_behalf_of``: the subject token exchanged. ``bearer``:
    the caller's verified bearer token; ``session``: the signed-in user's access token at
    ``subject_connector``; ``auto``: the bearer token when the request carries one, else
    the session's connector token (docs/services.md)."""
    subject_connector: str | None = None
    """The connector whose user token is a session subject (needed when several could apply)."""
    subject_issuers: list[str] = []
    """Issuers trusted by the exchange's authorization server besides itself, whose
    connector tokens may be session subjects (the AS is the ``bearer.issuer``)."""
    subject_token_type: str = "urn:ietf:params:oauth:token-type:access_token"
    requested_token_type: str = "urn:ietf:params:oauth:token-type:access_token"
    token_endpoint_params: dict[str, str] = {}
    headers: dict[str, str] = {}
    timeout: Duration = 10.0
    max_connections: Annotated[int, Field(gt=0)] = 100
    expiry_margin: Annotated[WholeSeconds, Field(ge=0)] = 60
    default_token_lifetime: Annotated[WholeSeconds, Field(gt=0)] = 300
    """Lifetime assumed for tokens issued without ``expires_in``."""
    cache_size: Annotated[int, Field(gt=0)] = 10_000
    """Most tokens kept in memory for this service (ST-07)."""
    cache_bytes: Annotated[int, Field(gt=0)] = 16 * 1024 * 1024
    """Most bytes of token material kept in memory for this service (ST-07)."""
    negative_cache_ttl: Annotated[DurationOrZero, Field(le=30)] = 2.0
    """Seconds a failed acquisition is remembered, so a down provider is not hammered."""
    token_retries: Annotated[int, Field(ge=0, le=5)] = 2
    """Retries of a failed token request (CL-02: at most 2 by default)."""
    token_retry_deadline: Duration = 10.0
    """Total seconds the token request with its retries may take."""
    retry_on_401: bool = True
    """A downstream 401 drops the token, acquires a fresh one and retries once (DS-03)."""
    retry_idempotent: bool = False
    """Retry downstream requests that failed transiently: connection failures (twice), and
    idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE) answered 429/502/503/504 (twice,
    after ``Retry-After`` when it is at most 5 s)."""
    allow_http: bool = False
    """Allow a plain ``http://`` base URL (DS-01); loopback in tests only."""
    insecure_skip_verify: bool = False
    """Disable TLS verification (logged as a WARNING at start) (DS-04)."""

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("base_url must be an absolute http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _flow_needs(self) -> ServiceSettings:
        if self.base_url.startswith("http://") and not self.allow_http:
            raise ValueError("base_url: plain http needs allow_http = true (DS-01)")
        if self.flow == "api_key" and self.api_key is None:
            raise ValueError("api_key: required with flow 'api_key' (api_key.value)")
        if self.flow == "connector" and not self.connector:
            raise ValueError("connector: required with flow 'connector'")
        if self.token_endpoint is not None and not self.token_endpoint.startswith(
            ("https://", "http://")
        ):
            raise ValueError("token_endpoint: must be an absolute http(s) URL")
        if self.subject == "session" and self.flow not in ("token_exchange", "on_behalf_of"):
            raise ValueError("subject: 'session' is only for token_exchange and on_behalf_of")
        if self.flow == "forward" and not self.audience:
            raise ValueError(
                "audience: required with flow 'forward' (the aud the caller's token must carry)"
            )
        return self
