"""Agents: workloads with their own client identity whose token is the RFC 8693 actor.

An Entra Agent ID agent (``kind = "entra"``) has no credential of its own: the blueprint
(the service's client) asks for a federated identity credential token naming the agent
identity (``fmi_path``), and the agent identity presents it as its client assertion
(Microsoft Entra "Agent ID OAuth protocols": autonomous app and agent's user account
flows). Both exchange tokens are cached per token endpoint like the agent's own token.

Defends against an agent's token being fetched once per user request (it is an app
token, cached per token endpoint and single-flight like any other) and against its
secret showing up anywhere (only the client id is ever printed).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from .._io import Flow, Shared
from ..errors import UpstreamError
from ..observability import token_request_metrics
from ..settings import AgentSettings
from ..tokens import SAFE, AccessToken, CachedToken, ErrorContext, RetryPolicy, TokenCache
from ..tokens import request_token as _request_token
from ..tokens.client_auth import ClientAuthenticator
from ..tokens.grants import ASSERTION_TYPE, FIC_SCOPE, client_credentials_form

if TYPE_CHECKING:
    from . import ServiceRegistry

__all__ = ["AgentRuntime"]

_MARGIN = 60.0
_NEGATIVE_TTL = 2.0


class AgentRuntime:
    """One configured agent: its client authentication and its cached own token."""

    def __init__(self, registry: ServiceRegistry, name: str, settings: AgentSettings) -> None:
        self.registry = registry
        self.name = name
        self.settings = settings
        self.entra = settings.kind == "entra"
        self.auth: ClientAuthenticator | None = (
            None
            if self.entra
            else ClientAuthenticator(
                settings.as_client(), clock=registry.relay.clock, where=f"agents.{name}"
            )
        )
        self.scopes = tuple(sorted(set(settings.scopes)))
        self.cache = TokenCache(64, 1024 * 1024, clock=registry.relay.clock)

    def __repr__(self) -> str:
        return f"AgentRuntime(name={self.name!r}, client_id={self.settings.client_id!r})"

    def token(self, fallback_endpoint: str, issuer: str | None) -> Flow[str]:
        """The agent's own access token (for ``actor_token``), cached and single-flight."""
        endpoint = self.settings.token_endpoint or fallback_endpoint
        key: Hashable = (endpoint, self.scopes, self.settings.audience)
        form = client_credentials_form(scopes=self.scopes, audience=self.settings.audience)
        return (yield from self._cached(key, endpoint, issuer, form, self.auth))

    def blueprint_token(
        self, blueprint: ClientAuthenticator | None, endpoint: str, issuer: str | None
    ) -> Flow[str]:
        """Entra: the blueprint's exchange token for this agent identity (``fmi_path``)."""
        if blueprint is None:
            raise UpstreamError(
                f"agent {self.name!r} needs the service's client (its blueprint) to authenticate",
                service=f"agent:{self.name}",
            )
        endpoint = self.settings.token_endpoint or endpoint
        form = client_credentials_form(
            scopes=(FIC_SCOPE,), extra=(("fmi_path", self.settings.client_id),)
        )
        key: Hashable = ("blueprint", blueprint.client_id, endpoint)
        return (yield from self._cached(key, endpoint, issuer, form, blueprint))

    def identity_token(self, blueprint_token: str, endpoint: str, issuer: str | None) -> Flow[str]:
        """Entra: the agent identity's own exchange token (the agent user's credential)."""
        endpoint = self.settings.token_endpoint or endpoint
        form = self.assertion_form(client_credentials_form(scopes=(FIC_SCOPE,)), blueprint_token)
        key: Hashable = ("identity", endpoint)
        return (yield from self._cached(key, endpoint, issuer, form, None))

    def assertion_form(self, form: dict[str, str], blueprint_token: str) -> dict[str, str]:
        """``form`` with the agent identity authenticated by the blueprint's token."""
        form["client_id"] = self.settings.client_id
        form["client_assertion_type"] = ASSERTION_TYPE
        form["client_assertion"] = blueprint_token
        return form

    def _cached(
        self,
        key: Hashable,
        endpoint: str,
        issuer: str | None,
        form: dict[str, str],
        auth: ClientAuthenticator | None,
    ) -> Flow[str]:
        hit = self.cache.get(key)
        if hit is not None:
            return hit.token.value
        entry: CachedToken = yield Shared(
            ("authrelay.agent", self.name, key),
            lambda: self._acquire(key, endpoint, issuer, form, auth),
        )
        return entry.token.value

    def _acquire(
        self,
        key: Hashable,
        endpoint: str,
        issuer: str | None,
        form: dict[str, str],
        auth: ClientAuthenticator | None,
    ) -> Flow[CachedToken]:
        entry = self.cache.get(key)
        if entry is not None:
            return entry
        failure = self.cache.failure(key)
        if failure is not None:
            raise failure
        http = self.registry.relay.settings.http
        metrics = self.registry.relay.metrics
        grant_type = form.get("grant_type", "")
        try:
            with token_request_metrics(metrics, f"agent:{self.name}", "agent", grant_type):
                response = yield from _request_token(
                    endpoint,
                    form,
                    auth,
                    issuer=issuer,
                    policy=RetryPolicy(SAFE, 2, http.token_timeout),
                    context=ErrorContext(service=f"agent:{self.name}", user_grant=False),
                    max_bytes=http.max_token_bytes,
                    timeout=http.token_timeout,
                )
        except UpstreamError as exc:
            self.cache.fail(key, exc, _NEGATIVE_TTL)
            raise
        now = self.registry.relay.clock()
        lifetime = response.expires_in or 300.0
        token = AccessToken(response.access_token, now + lifetime, scopes=self.scopes)
        return self.cache.put(key, token, f"Bearer {token.value}", _MARGIN)
