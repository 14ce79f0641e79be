"""Downstream services: a lazy, request-scoped ``Services`` mapping of authorized clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import UnknownService
from ..principal import Credentials, Principal

if TYPE_CHECKING:
    from ..relay import Relay

__all__ = ["ServiceRegistry", "Services"]


class ServiceRegistry:
    """Everything about services that is built once per relay."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.names = tuple(relay.settings.services)

    def for_request(
        self, principal: Principal, credentials: Credentials, *, asynchronous: bool
    ) -> Services:
        """The lazy ``Services`` for one request; costs one small allocation."""
        return Services(self, principal, credentials, asynchronous)

    def client(
        self, name: str, principal: Principal, credentials: Credentials, *, asynchronous: bool
    ) -> Any:
        """A client for ``name`` bound to this caller."""
        raise UnknownService(name, list(self.names))

    async def aclose(self) -> None:
        """Close pooled clients."""

    def close(self) -> None:
        """Close pooled clients."""


class Services:
    """``services["github"]``: an authorized client per downstream service, made on first use."""

    __slots__ = ("_asynchronous", "_clients", "_credentials", "_principal", "_registry")

    def __init__(
        self,
        registry: ServiceRegistry,
        principal: Principal,
        credentials: Credentials,
        asynchronous: bool,
    ) -> None:
        self._registry = registry
        self._principal = principal
        self._credentials = credentials
        self._asynchronous = asynchronous
        self._clients: dict[str, Any] | None = None

    def __getitem__(self, name: str) -> Any:
        clients = self._clients
        if clients is None:
            clients = self._clients = {}
        client = clients.get(name)
        if client is None:
            if name not in self._registry.names:
                raise UnknownService(name, list(self._registry.names))
            client = clients[name] = self._registry.client(
                name, self._principal, self._credentials, asynchronous=self._asynchronous
            )
        return client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except UnknownService as exc:
            raise AttributeError(str(exc)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._registry.names

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry.names)

    def __len__(self) -> int:
        return len(self._registry.names)

    def __repr__(self) -> str:
        return f"Services({list(self._registry.names)!r})"
