"""The hook through which connectors supply user-delegated tokens to services.

A service with ``flow = "connector"`` asks the registered :class:`UserTokenSource` for
the signed-in user's token at that connector. The source owns the stored token set
(refresh, rotation, store locks: RT-01…RT-06); the services layer only caches the
access token in memory until ``expires_at - margin`` and asks again with
``force_refresh=True`` after a downstream 401.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .._io import Flow
from ..principal import Principal
from .model import AccessToken

__all__ = ["UserTokenSource"]


@runtime_checkable
class UserTokenSource(Protocol):
    """Supplies the user's access token at a connector, as a sans-IO flow.

    ``user_token`` must return a token for ``principal`` at ``connector`` with at least
    ``scopes`` (empty: the connector's configured scopes), refreshing it when it is
    expired or when ``force_refresh`` is true. It raises
    :class:`~authrelay.errors.ReauthorizationRequired` when the user has not connected
    or the refresh token was refused, :class:`~authrelay.errors.ConsentRequired` when
    the granted scopes fall short, and :class:`~authrelay.errors.UpstreamError` (or a
    subclass) when the provider fails.
    """

    def user_token(
        self,
        principal: Principal,
        connector: str,
        scopes: tuple[str, ...],
        *,
        force_refresh: bool,
    ) -> Flow[AccessToken]:
        """The user's access token at ``connector`` (a flow run by the shell's driver)."""
        ...
