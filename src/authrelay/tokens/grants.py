"""Form bodies of the grants authrelay sends to token endpoints.

Defends against malformed or ambiguous grant requests: ``actor_token_type`` is sent iff
``actor_token`` is (RFC 8693 §2.1, TX-01), scopes are space-joined in a stable order, and
extra parameters from settings cannot overwrite the grant's own fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "ASSERTION_TYPE",
    "FIC_SCOPE",
    "JWT_BEARER",
    "TOKEN_EXCHANGE",
    "USER_FIC",
    "client_credentials_form",
    "on_behalf_of_form",
    "token_exchange_form",
    "user_fic_form",
]

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
USER_FIC = "user_fic"
FIC_SCOPE = "api://AzureADTokenExchange/.default"
"""Scope of an Entra federated identity credential token (Agent ID protocols)."""


def _finish(
    form: dict[str, str], scopes: Iterable[str], extra: Iterable[tuple[str, str]]
) -> dict[str, str]:
    scope = " ".join(scopes)
    if scope:
        form["scope"] = scope
    for name, value in extra:
        form.setdefault(name, value)
    return form


def client_credentials_form(
    *,
    scopes: Iterable[str],
    audience: str | None = None,
    resource: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
) -> dict[str, str]:
    """RFC 6749 §4.4.2 client credentials, with RFC 8707 ``resource`` / ``audience``."""
    form = {"grant_type": "client_credentials"}
    if audience:
        form["audience"] = audience
    if resource:
        form["resource"] = resource
    return _finish(form, scopes, extra)


def token_exchange_form(
    *,
    subject_token: str,
    subject_token_type: str,
    requested_token_type: str,
    scopes: Iterable[str],
    audience: str | None = None,
    resource: str | None = None,
    actor_token: str | None = None,
    actor_token_type: str = ACCESS_TOKEN_TYPE,
    extra: Iterable[tuple[str, str]] = (),
) -> dict[str, str]:
    """RFC 8693 §2.1 token exchange of ``subject_token`` (and ``actor_token``)."""
    form = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject_token,
        "subject_token_type": subject_token_type,
        "requested_token_type": requested_token_type,
    }
    if audience:
        form["audience"] = audience
    if resource:
        form["resource"] = resource
    if actor_token is not None:
        form["actor_token"] = actor_token
        form["actor_token_type"] = actor_token_type
    return _finish(form, scopes, extra)


def on_behalf_of_form(
    *,
    assertion: str,
    scopes: Iterable[str],
    resource: str | None = None,
    extra: Iterable[tuple[str, str]] | Mapping[str, str] = (),
) -> dict[str, str]:
    """The Entra on-behalf-of request: RFC 7523 jwt-bearer with ``requested_token_use``."""
    form = {
        "grant_type": JWT_BEARER,
        "assertion": assertion,
        "requested_token_use": "on_behalf_of",
    }
    if resource:
        form["resource"] = resource
    pairs = extra.items() if isinstance(extra, Mapping) else extra
    return _finish(form, scopes, pairs)


def user_fic_form(
    *,
    agent_identity: str,
    blueprint_token: str,
    agent_token: str,
    scopes: Iterable[str],
    username: str | None = None,
    user_id: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
) -> dict[str, str]:
    """Entra Agent ID's agent user request ("agent's user account" OAuth flow).

    The agent identity authenticates with the blueprint's exchange token as its client
    assertion and presents its own exchange token as the user's federated credential;
    ``username`` (UPN) or ``user_id`` (object id) names the agent user, never both.
    """
    if (username is None) == (user_id is None):
        raise ValueError("user_fic needs exactly one of username and user_id")
    form = {
        "grant_type": USER_FIC,
        "client_id": agent_identity,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": blueprint_token,
        "user_federated_identity_credential": agent_token,
    }
    if username is not None:
        form["username"] = username
    else:
        assert user_id is not None
        form["user_id"] = user_id
    return _finish(form, scopes, extra)
