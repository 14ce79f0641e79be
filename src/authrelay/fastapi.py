"""FastAPI integration: dependencies for the caller, per-route scopes and services.

With ``app.add_middleware(AuthRelayMiddleware, settings=settings)``::

    @app.get("/me")
    async def me(user: CurrentPrincipal) -> dict[str, str]: ...

    @app.get("/orders", dependencies=[require(scopes=["orders.read"])])
    async def orders(orders: Annotated[AsyncServiceClient, Service("orders")]) -> Any: ...

``require(...)`` is already a dependency; ``Depends(require(...))`` means the same.

The dependencies raise :class:`~authrelay.MissingCredentials` /
:class:`~authrelay.InsufficientScope`; the middleware renders them per the error model.
They read the request only through ``HTTPConnection``, so nothing of theirs leaks into
the OpenAPI schema as a query parameter; the schema declares the bearer scheme instead.

Defends against: routes that forget to check the caller (fail closed), and a route that
silently gets an anonymous principal because the middleware is missing (a clear error).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Depends
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPBearer
from starlette.requests import HTTPConnection

from .declare import record
from .principal import Principal
from .services import AsyncServiceClient, ServiceClient
from .starlette import check, get_credentials, get_principal, get_services

__all__ = [
    "AsyncServiceClient",
    "CurrentPrincipal",
    "OptionalPrincipal",
    "Service",
    "ServiceClient",
    "require",
]

# Only for the OpenAPI document (a "bearer" security scheme, so API explorers offer a
# token field); authrelay's middleware has already read and verified the header.
_bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearer", bearerFormat="JWT")


def _optional_principal(
    connection: HTTPConnection, _: Annotated[Any, Depends(_bearer_scheme)] = None
) -> Principal:
    return get_principal(connection)


def _current_principal(
    connection: HTTPConnection, _: Annotated[Any, Depends(_bearer_scheme)] = None
) -> Principal:
    principal = get_principal(connection)
    check(principal, get_credentials(connection), ())
    return principal


OptionalPrincipal = Annotated[Principal, Depends(_optional_principal)]
"""The caller, possibly anonymous (``principal.is_authenticated`` tells)."""

CurrentPrincipal = Annotated[Principal, Depends(_current_principal)]
"""The signed-in caller; anonymous callers get 401 (API) or the login redirect (browser)."""


class _Requirement(DependsParam):
    """A ``Depends`` that is also callable, so ``Depends(require(...))`` works as well."""

    @property
    def __wrapped__(self) -> Any:  # FastAPI reads the signature through it
        return self.dependency

    @property
    def __globals__(self) -> dict[str, Any]:  # ...and resolves its annotations here
        return getattr(self.dependency, "__globals__", {})

    def __call__(self, *args: Any, **kwargs: Any) -> Principal:
        assert self.dependency is not None
        principal: Principal = self.dependency(*args, **kwargs)
        return principal


def require(*, scopes: Sequence[str] | str = ()) -> Any:
    """A dependency that admits only signed-in callers holding every one of ``scopes``.

    Use it in ``dependencies=[require(scopes=["orders.read"])]`` or as a parameter
    ``user: Annotated[Principal, require(scopes=["orders.read"])]`` (it yields the
    principal). It is already a ``Depends``; wrapping it, ``Depends(require(...))``,
    means the same. ``scopes`` may also be one space-separated string.
    """
    required = tuple(scopes.split() if isinstance(scopes, str) else scopes)
    for scope in required:
        if not isinstance(scope, str) or not scope or " " in scope:
            raise TypeError(f"require(scopes=...) takes scope names, got {scope!r}")

    def dependency(
        connection: HTTPConnection, _: Annotated[Any, Depends(_bearer_scheme)] = None
    ) -> Principal:
        principal = get_principal(connection)
        check(principal, get_credentials(connection), required)
        return principal

    record(dependency, scopes=required)
    return _Requirement(dependency)


def Service(name: str) -> Any:
    """``Annotated[AsyncServiceClient, Service("orders")]``: the request's client for a service.

    Lazy like ``request.state.services[name]``: no token is fetched until the route
    sends a request through it. The name is checked against the settings when the app
    starts (ASGI ``lifespan``): an unknown one stops it, naming the nearest configured
    service; ``authrelay check --app`` lists the services of every route.
    """
    if not isinstance(name, str) or not name:
        raise TypeError("Service() takes the name of a configured service")

    def dependency(connection: HTTPConnection) -> AsyncServiceClient:
        return get_services(connection)[name]

    dependency.__name__ = f"service_{name}"
    record(dependency, services=(name,))
    return Depends(dependency)
