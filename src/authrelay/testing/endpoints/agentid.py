"""Entra Agent ID grants of the test provider: exchange tokens, agent identities, ``user_fic``.

The shape follows Microsoft Entra's "OAuth 2.0 protocols for agents" (autonomous app
flow, agent's user account flow):

1. The blueprint (a registered client, with its own credential) asks ``client_credentials``
   with ``scope=api://AzureADTokenExchange/.default`` and ``fmi_path=<agent identity id>``;
   it gets an exchange token for that agent identity (T1).
2. The agent identity (``client_id`` = its id, ``client_assertion`` = T1) asks
   ``client_credentials``: with the exchange scope it gets its own exchange token (T2),
   with an API's scope its app token (``idtyp=app``).
3. The agent identity (``client_assertion`` = T1) asks ``grant_type=user_fic`` with
   ``user_federated_identity_credential`` = T2 and ``username`` (UPN) or ``user_id``
   (object id): a token whose subject is its agent user (``idtyp=user``).

The agent on-behalf-of flow is the same client authentication (T1) on the usual
on-behalf-of request, with a user's token addressed to the blueprint.

Defends against a lenient provider hiding client mistakes: T1 only for an agent identity
of the asking blueprint and only with the exchange scope; an agent identity authenticates
with an active T1 naming it and nothing else; T1 is never accepted as T2 nor T2 as T1;
``username`` and ``user_id`` are mutually exclusive; an agent user serves only the agent
identity linked to it; exchange tokens are addressed to no API.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from ..models import GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER, OAuthClient
from ..state import Grant
from ._common import ASSERTION_TYPE, OAuthError, token_body
from .exchange import on_behalf_of
from .targets import OIDC_SCOPES, resolve_target

if TYPE_CHECKING:
    from ..models import AgentIdentity
    from ..provider import IdentityProvider

__all__ = ["FIC_AUDIENCE", "FIC_SCOPE", "USER_FIC", "agent_grant", "agent_of", "blueprint_fic"]

FIC_AUDIENCE = "api://AzureADTokenExchange"
FIC_SCOPE = f"{FIC_AUDIENCE}/.default"
USER_FIC = "user_fic"


def _invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, 401)


def _exchange_claims(idp: IdentityProvider, token: str) -> dict[str, Any] | None:
    """Claims of an active exchange token issued here, else None."""
    record = idp.state.record(token)
    if record is None or not idp.state.is_active(record, idp.clock()):
        return None
    if record.claims.get("aud") != FIC_AUDIENCE:
        return None
    return record.claims


def _exchange_token(
    idp: IdentityProvider, sub: str, client_id: str, extra: dict[str, Any]
) -> dict[str, Any]:
    grant = idp.state.add_grant(Grant(secrets.token_hex(8), sub, client_id, (), (FIC_AUDIENCE,)))
    issued = idp.issuer_.access_token(
        grant,
        ttl=idp.access_token_ttl,
        resource=None,
        audience=(FIC_AUDIENCE,),
        force_jwt=True,
        extra={"idtyp": "app", "azp": client_id, "appid": client_id, **extra},
    )
    return token_body(issued)


def blueprint_fic(
    idp: IdentityProvider, client: OAuthClient, params: dict[str, str]
) -> dict[str, Any]:
    """Step 1: the blueprint's exchange token for the agent identity in ``fmi_path``."""
    agent = idp.agent_identities.get(params["fmi_path"])
    if agent is None or agent.blueprint != client.client_id:
        raise OAuthError("unauthorized_client", "fmi_path names no agent identity of this client")
    if params.get("scope") != FIC_SCOPE:
        raise OAuthError("invalid_scope", f"an fmi_path request takes scope {FIC_SCOPE} only")
    if "resource" in params or "audience" in params:
        raise OAuthError("invalid_request", "an fmi_path request takes no resource or audience")
    return _exchange_token(idp, client.client_id, client.client_id, {"fmi_path": agent.client_id})


def agent_of(
    idp: IdentityProvider, request: Request, params: dict[str, str]
) -> AgentIdentity | None:
    """The agent identity a token request authenticates as, or None for other clients."""
    agent = idp.agent_identities.get(params.get("client_id", ""))
    if agent is None:
        return None
    if request.headers.get("authorization") is not None or "client_secret" in params:
        raise _invalid_client("an agent identity authenticates with its blueprint's token only")
    if params.get("client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError("invalid_request", "client_assertion_type must be jwt-bearer")
    claims = _exchange_claims(idp, params.get("client_assertion", ""))
    if (
        claims is None
        or claims.get("fmi_path") != agent.client_id
        or claims.get("client_id") != agent.blueprint
    ):
        raise _invalid_client("client_assertion is not the blueprint's token for this agent")
    return agent


def agent_grant(
    idp: IdentityProvider, agent: AgentIdentity, grant_type: str, params: dict[str, str]
) -> dict[str, Any]:
    """Steps 2 and 3 for an authenticated agent identity."""
    scopes = params.get("scope", "").split()
    if not scopes:
        raise OAuthError("invalid_request", "scope is required")
    if grant_type == GRANT_CLIENT_CREDENTIALS:
        if FIC_SCOPE in scopes:
            if scopes != [FIC_SCOPE] or "resource" in params or "audience" in params:
                raise OAuthError("invalid_scope", f"{FIC_SCOPE} is asked for alone")
            return _exchange_token(idp, agent.client_id, agent.client_id, {})
        if any(s in OIDC_SCOPES for s in scopes):
            raise OAuthError("invalid_scope", "openid and offline_access need a user")
        return _issue(idp, agent, agent.client_id, scopes, params, {"idtyp": "app"})
    if grant_type == USER_FIC:
        return _user_fic(idp, agent, scopes, params)
    if grant_type == GRANT_JWT_BEARER:
        # The agent on-behalf-of flow: the user's token was sent to the blueprint's API.
        blueprint = idp.clients[agent.blueprint]
        addressed = (blueprint.client_id, *blueprint.app_id_uris)
        return on_behalf_of(idp, _client(agent, addressed), params)
    raise OAuthError("unauthorized_client", "an agent identity may not use this grant type")


def _user_fic(
    idp: IdentityProvider, agent: AgentIdentity, scopes: list[str], params: dict[str, str]
) -> dict[str, Any]:
    if FIC_SCOPE in scopes:
        raise OAuthError("invalid_scope", f"user_fic does not issue {FIC_SCOPE}")
    if "resource" in params or "audience" in params:
        raise OAuthError("invalid_request", "user_fic names its target by scope only")
    credential = params.get("user_federated_identity_credential")
    if credential is None:
        raise OAuthError("invalid_request", "user_federated_identity_credential is required")
    claims = _exchange_claims(idp, credential)
    if (
        claims is None
        or "fmi_path" in claims
        or claims.get("sub") != agent.client_id
        or claims.get("client_id") != agent.client_id
    ):
        raise OAuthError("invalid_grant", "the credential is not this agent identity's token")
    username, user_id = params.get("username"), params.get("user_id")
    if username is not None and user_id is not None:
        raise OAuthError("invalid_request", "username and user_id are mutually exclusive")
    if username is None and user_id is None:
        raise OAuthError("invalid_request", "username or user_id is required")
    user = idp.users_by_name.get(username) if username else idp.users.get(user_id or "")
    if user is None:
        raise OAuthError("invalid_grant", "unknown user")
    if user.sub != agent.user:
        raise OAuthError("invalid_grant", "the user is not this agent identity's agent user")
    extra = {"idtyp": "user", "oid": user.sub, "upn": user.username}
    return _issue(idp, agent, user.sub, scopes, params, extra)


def _issue(
    idp: IdentityProvider,
    agent: AgentIdentity,
    sub: str,
    scopes: list[str],
    params: dict[str, str],
    extra: dict[str, Any],
) -> dict[str, Any]:
    target = resolve_target(
        idp,
        _client(agent),
        scopes,
        resources=params["resource"].split(" ") if "resource" in params else (),
        audiences=params["audience"].split(" ") if "audience" in params else (),
    )
    grant = idp.state.add_grant(
        Grant(secrets.token_hex(8), sub, agent.client_id, target.scopes, target.audience)
    )
    issued = idp.issuer_.access_token(
        grant,
        ttl=idp.access_token_ttl,
        resource=target.resource,
        audience=target.audience,
        force_jwt=True,
        extra={"azp": agent.client_id, "appid": agent.client_id, **extra},
    )
    return token_body(issued)


def _client(agent: AgentIdentity, app_id_uris: tuple[str, ...] = ()) -> OAuthClient:
    """The agent identity as the client the shared grant code expects."""
    return OAuthClient(
        agent.client_id,
        token_endpoint_auth_method="private_key_jwt",
        jwks={"keys": []},
        grant_types=(GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER),
        app_id_uris=app_id_uris,
    )
