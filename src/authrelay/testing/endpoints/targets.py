"""Which resource a token is for, and which scopes it carries.

Defends against tokens that are valid in too many places: every access token names at most
one resource as ``aud`` (RFC 8707 §2, RFC 9068 §3), scopes are checked against what the
resource and the client allow (RFC 6749 §3.3), and an unknown audience is ``invalid_target``
rather than a token with a made-up audience (RFC 8693 §2.2.2).

The rule, in order: explicit ``resource`` / ``audience`` parameters name the target; else
scopes of the form ``<resource>/<scope>`` or ``<resource>/.default`` name it; else scopes
owned by exactly one resource name it; else the token has no resource (``aud`` = client_id,
opaque unless the client's ``access_token_format`` is ``"jwt"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._common import OAuthError

if TYPE_CHECKING:
    from ..models import OAuthClient, Resource
    from ..provider import IdentityProvider

__all__ = ["OIDC_SCOPES", "Target", "resolve_target"]

OIDC_SCOPES = ("openid", "profile", "email", "offline_access")


@dataclass(frozen=True)
class Target:
    """The outcome: a resource (or None), the audience list and the granted scopes."""

    resource: Resource | None
    audience: tuple[str, ...]
    scopes: tuple[str, ...]


def resolve_target(
    idp: IdentityProvider,
    client: OAuthClient,
    scopes: Sequence[str],
    *,
    resources: Iterable[str] = (),
    audiences: Iterable[str] = (),
    default_all_scopes: bool = True,
) -> Target:
    """Resolve a request's target; raises ``invalid_target`` / ``invalid_scope``."""
    named: list[str] = []
    extra_audience: list[str] = []
    for value in resources:
        if value not in idp.resources:
            raise OAuthError("invalid_target", "unknown resource")
        named.append(value)
    for value in audiences:
        if value in idp.resources:
            named.append(value)
        elif value in idp.clients:
            extra_audience.append(value)
        else:
            raise OAuthError("invalid_target", "unknown audience")
    granted: list[str] = []
    implied: list[str] = []
    loose: list[str] = []
    for scope in scopes:
        if scope in OIDC_SCOPES:
            granted.append(scope)
            continue
        prefix, _, short = scope.rpartition("/")
        if prefix in idp.resources:
            implied.append(prefix)
            if short == ".default":
                granted.extend(idp.resources[prefix].scopes)
            elif short in idp.resources[prefix].scopes:
                granted.append(short)
            else:
                raise OAuthError("invalid_scope", f"unknown scope {scope!r}")
            continue
        owners = [r.identifier for r in idp.resources.values() if scope in r.scopes]
        if len(owners) == 1:
            implied.append(owners[0])
        elif not owners and not (client.scopes is not None and scope in client.scopes):
            raise OAuthError("invalid_scope", f"unknown scope {scope!r}")
        loose.append(scope)
        granted.append(scope)
    candidates = list(dict.fromkeys(named or implied))
    if len(candidates) + (1 if extra_audience else 0) > 1 or len(extra_audience) > 1:
        raise OAuthError("invalid_target", "a token can be issued for one resource only")
    resource = idp.resources[candidates[0]] if candidates else None
    if resource is not None:
        for scope in loose:
            if scope not in resource.scopes and scope not in OIDC_SCOPES:
                raise OAuthError("invalid_scope", f"scope {scope!r} is not offered by resource")
        if default_all_scopes and not any(s in resource.scopes for s in granted):
            granted.extend(
                s
                for s in resource.scopes
                if client.scopes is None
                or s in client.scopes
                or f"{resource.identifier}/{s}" in client.scopes
            )
    audience = (resource.identifier,) if resource else tuple(extra_audience)
    if client.allowed_audiences is not None:
        for aud in audience:
            if aud not in client.allowed_audiences:
                raise OAuthError("invalid_target", "client may not request this audience")
    granted = list(dict.fromkeys(granted))
    if client.scopes is not None:
        for scope in granted:
            full = f"{resource.identifier}/{scope}" if resource else scope
            if scope not in client.scopes and full not in client.scopes and scope != "openid":
                raise OAuthError("invalid_scope", f"client may not request {scope!r}")
    return Target(resource, audience, tuple(granted))
