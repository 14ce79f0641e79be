"""Per-call overrides of a service's token request (``with_options``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["ACTOR_FLOWS", "DEFAULT_OPTIONS", "CallOptions"]

ACTOR_FLOWS = frozenset({"token_exchange", "client_credentials"})
"""The flows a per-call actor changes: the exchange sends it as ``actor_token`` (``act``),
an app token is the agent's own. The others (``on_behalf_of``, ``forward``, ``api_key``,
``connector``) would ignore it, so it is refused there."""


@dataclass(frozen=True, slots=True)
class CallOptions:
    """What a call changes from the service's settings; each variant is cached apart.

    ``scopes`` replaces the configured scopes, ``tenant`` fills ``{tenant}`` in the token
    endpoint, ``actor`` names an agent (under ``[agents]``) acting for the user (its token
    becomes the RFC 8693 ``actor_token``; without a user it asks for its own app token),
    ``app_token`` asks for an app-only (client credentials) token whatever the flow,
    ``token_endpoint_params`` adds parameters to the token request.
    """

    scopes: tuple[str, ...] | None = None
    tenant: str | None = None
    actor: str | None = None
    app_token: bool = False
    token_endpoint_params: tuple[tuple[str, str], ...] = ()

    def merged(
        self,
        *,
        scopes: Iterable[str] | None = None,
        tenant: str | None = None,
        actor: str | None = None,
        app_token: bool | None = None,
        token_endpoint_params: Mapping[str, str] | None = None,
    ) -> CallOptions:
        """A copy with the given fields replaced."""
        params = self.token_endpoint_params
        if token_endpoint_params is not None:
            params = tuple(sorted({**dict(params), **dict(token_endpoint_params)}.items()))
        return CallOptions(
            scopes=tuple(sorted(set(scopes))) if scopes is not None else self.scopes,
            tenant=tenant if tenant is not None else self.tenant,
            actor=actor if actor is not None else self.actor,
            app_token=app_token if app_token is not None else self.app_token,
            token_endpoint_params=params,
        )


DEFAULT_OPTIONS = CallOptions()
