"""Per-call overrides of a service's token request (``with_options``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runtime import ServiceRuntime

__all__ = ["ACTOR_FLOWS", "DEFAULT_OPTIONS", "ENTRA_FLOWS", "CallOptions", "check_agent_options"]

_GUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")

ACTOR_FLOWS = frozenset({"token_exchange", "client_credentials"})
"""The flows a per-call actor changes: the exchange sends it as ``actor_token`` (``act``),
an app token is the agent's own. The others (``on_behalf_of``, ``forward``, ``api_key``,
``connector``) would ignore a generic agent, so it is refused there (an Entra agent
identity takes :data:`ENTRA_FLOWS` instead)."""

ENTRA_FLOWS = frozenset({"client_credentials", "on_behalf_of"})
"""The flows an Entra agent identity takes part in: its own (or its agent user's) token,
and the caller's on-behalf-of request made as the agent identity (as Microsoft.Identity.Web's
``WithAgentIdentity`` does); never a token exchange."""


@dataclass(frozen=True, slots=True)
class CallOptions:
    """What a call changes from the service's settings; each variant is cached apart.

    ``scopes`` replaces the configured scopes, ``tenant`` fills ``{tenant}`` in the token
    endpoint, ``actor`` names an agent (under ``[agents]``) acting for the user (its token
    becomes the RFC 8693 ``actor_token``; without a user it asks for its own app token),
    ``app_token`` asks for an app-only (client credentials) token whatever the flow,
    ``token_endpoint_params`` adds parameters to the token request, ``agent_user`` (UPN)
    or ``agent_user_id`` (object id) asks an Entra agent identity (``actor``) for a token
    of its agent user (the ``user_fic`` grant).
    """

    scopes: tuple[str, ...] | None = None
    tenant: str | None = None
    actor: str | None = None
    app_token: bool = False
    token_endpoint_params: tuple[tuple[str, str], ...] = ()
    agent_user: str | None = None
    agent_user_id: str | None = None

    def merged(
        self,
        *,
        scopes: Iterable[str] | None = None,
        tenant: str | None = None,
        actor: str | None = None,
        app_token: bool | None = None,
        token_endpoint_params: Mapping[str, str] | None = None,
        agent_user: str | None = None,
        agent_user_id: str | None = None,
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
            agent_user=agent_user if agent_user is not None else self.agent_user,
            agent_user_id=agent_user_id if agent_user_id is not None else self.agent_user_id,
        )


DEFAULT_OPTIONS = CallOptions()


def check_agent_options(runtime: ServiceRuntime, options: CallOptions, flow: str) -> None:
    """Raise ``ValueError`` for agent options Entra would refuse (or that cannot apply).

    As the Entra SDK sidecar rules say: an agent user is named by UPN or by object id,
    never both, and always with the agent identity that owns it; only an Entra agent
    identity has one, and its agent user's token is an app-side (``user_fic``) request.
    An Entra agent is never an RFC 8693 actor: Entra has no ``act`` claim to carry it.
    """
    username, user_id = options.agent_user, options.agent_user_id
    if username is not None and user_id is not None:
        raise ValueError("agent_user and agent_user_id are mutually exclusive")
    if (username is not None or user_id is not None) and options.actor is None:
        raise ValueError("agent_user and agent_user_id need actor (the agent identity)")
    if username is not None and (not username.strip() or len(username) > 256):
        raise ValueError("agent_user must be a user principal name")
    if user_id is not None and (not _GUID.match(user_id) or not user_id.strip("0-")):
        raise ValueError("agent_user_id must be a non-empty GUID (the user's object id)")
    if options.actor is None:
        return
    agent = runtime.registry.agent(options.actor)
    if (username is not None or user_id is not None) and not agent.entra:
        raise ValueError(
            f"agent {options.actor!r} has no agent user: only an Entra agent identity "
            "(kind = 'entra') does; other IdPs carry the agent as the RFC 8693 act"
        )
    if agent.entra and flow == "token_exchange":
        raise ValueError(
            f"agent {options.actor!r} is an Entra agent identity, which Entra never puts in "
            "an act claim: ask for its app token (app_token=True), its agent user's token, "
            "or use an on_behalf_of service"
        )
