"""Services and scopes declared per route, checked against the settings at start-up.

``@uses("github")`` (Starlette, Flask, Django) and FastAPI's ``Service("github")`` record
on the view which services it calls; ``requires``/``require`` record the scopes it
needs. :func:`collect` walks an app's routes (Starlette and FastAPI ``app.routes``,
Flask ``app.view_functions``, Django's URL resolver) and :func:`check_routes` refuses a
name no service has, naming the nearest configured one. The middlewares run the check
when the app starts (ASGI ``lifespan``, Flask's first request, Django's middleware
loading); ``authrelay check --app module:app`` runs it offline and prints the table.

Defends against: a typo in a service name found only when that route first runs.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError

__all__ = [
    "RouteDeclaration",
    "check_app",
    "check_routes",
    "collect",
    "declared",
    "injected",
    "record",
    "service_names",
]

SERVICES_ATTR = "__authrelay_services__"
SCOPES_ATTR = "__authrelay_scopes__"
_NOT_IDENTIFIER = re.compile(r"\W")


@dataclass(frozen=True)
class RouteDeclaration:
    """One route of an app: where it is, and the services and scopes its view declares."""

    methods: tuple[str, ...]
    path: str
    services: tuple[str, ...]
    scopes: tuple[str, ...]


def service_names(names: Iterable[str], what: str) -> tuple[str, ...]:
    """``names`` as given, refused unless each is a non-empty string."""
    checked = tuple(names)
    for name in checked:
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"{what} takes names of configured services, got {name!r}")
    return checked


def record(target: Any, *, services: Iterable[str] = (), scopes: Iterable[str] = ()) -> None:
    """Add ``services`` and ``scopes`` to what ``target`` (a view) declares."""
    old_services, old_scopes = declared(target)
    setattr(target, SERVICES_ATTR, tuple(dict.fromkeys((*old_services, *services))))
    setattr(target, SCOPES_ATTR, tuple(dict.fromkeys((*old_scopes, *scopes))))


def declared(target: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The services and scopes ``target`` declares (``functools.wraps`` carries them)."""
    return tuple(getattr(target, SERVICES_ATTR, ())), tuple(getattr(target, SCOPES_ATTR, ()))


def injected(view: Callable[..., Any], names: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``(parameter, service)`` pairs: the declared services ``view`` takes as arguments.

    A service is passed to the parameter named like it, lower case with any character
    that cannot be in a Python name as ``_`` (``"Graph"`` -> ``graph``, ``"my-api"`` ->
    ``my_api``); a view without that parameter reaches the client the usual way.
    """
    try:
        parameters = inspect.signature(view).parameters
    except (TypeError, ValueError):
        return ()
    pairs = []
    for name in names:
        parameter = _NOT_IDENTIFIER.sub("_", name.lower())
        if parameter in parameters:
            pairs.append((parameter, name))
    return tuple(pairs)


def suggestion(name: str, configured: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the configured name nearest ``name``, or ``""``."""
    folded = {item.lower(): item for item in configured}
    close = difflib.get_close_matches(name.lower(), list(folded), n=1, cutoff=0.6)
    return f" (did you mean {folded[close[0]]!r}?)" if close else ""


def check_routes(routes: Iterable[RouteDeclaration], configured: Iterable[str]) -> None:
    """Raise :class:`~authrelay.ConfigurationError` listing every undeclared service name.

    Names match the settings without regard to case, as ``services[...]`` does.
    """
    names = list(configured)
    folded = {name.lower() for name in names}
    listed = ", ".join(sorted(names)) or "none"
    problems = []
    for route in routes:
        for name in route.services:
            if name.lower() not in folded:
                where = f"{'|'.join(route.methods)} {route.path}".strip()
                problems.append(
                    f"route {where}: no service named {name!r}{suggestion(name, names)}; "
                    f"configured services: {listed}"
                )
    if problems:
        raise ConfigurationError(list(dict.fromkeys(problems)))


def check_app(app: Any, configured: Iterable[str]) -> list[RouteDeclaration]:
    """Collect ``app``'s routes and check them (see :func:`check_routes`); return them."""
    routes = collect(app)
    check_routes(routes, configured)
    return routes


def collect(app: Any) -> list[RouteDeclaration]:
    """The routes of a Starlette, FastAPI, Flask or Django app, with their declarations.

    For Django pass the WSGI/ASGI application (or anything, once Django is set up): the
    routes come from the project's URL resolver. Anything else has no routes.
    """
    if hasattr(app, "view_functions") and hasattr(app, "url_map"):
        return list(_flask_routes(app))
    routes = getattr(app, "routes", None)
    if isinstance(routes, list):
        return list(_starlette_routes(routes, ""))
    if _is_django(app):
        from django.urls import get_resolver

        return list(_django_routes(get_resolver().url_patterns, ""))
    return []


def _flask_routes(app: Any) -> Iterator[RouteDeclaration]:
    views: Mapping[str, Any] = app.view_functions
    for rule in app.url_map.iter_rules():
        view = views.get(rule.endpoint)
        if view is None:
            continue
        methods = tuple(sorted(set(rule.methods or ()) - {"HEAD", "OPTIONS"}))
        services, scopes = declared(view)
        yield RouteDeclaration(methods, rule.rule, services, scopes)


def _starlette_routes(routes: list[Any], prefix: str) -> Iterator[RouteDeclaration]:
    for route in routes:
        path = prefix + str(getattr(route, "path", ""))
        children = getattr(route, "routes", None)
        endpoint = getattr(route, "endpoint", None)
        if endpoint is None:
            if isinstance(children, list):  # Mount, Host
                yield from _starlette_routes(children, path)
            continue
        services, scopes = declared(endpoint)
        dependant = getattr(route, "dependant", None)
        if dependant is not None:  # FastAPI: Service() and require() in the dependencies
            extra_services, extra_scopes = _dependant_declarations(dependant)
            services = tuple(dict.fromkeys((*services, *extra_services)))
            scopes = tuple(dict.fromkeys((*scopes, *extra_scopes)))
        methods = getattr(route, "methods", None)
        shown = tuple(sorted(set(methods) - {"HEAD"})) if methods else ("WS",)
        yield RouteDeclaration(shown, path, services, scopes)


def _dependant_declarations(dependant: Any) -> tuple[list[str], list[str]]:
    services: list[str] = []
    scopes: list[str] = []
    pending = [dependant]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        call_services, call_scopes = declared(getattr(current, "call", None))
        services.extend(call_services)
        scopes.extend(call_scopes)
        pending.extend(reversed(getattr(current, "dependencies", ())))
    return services, scopes


def _is_django(app: Any) -> bool:
    if getattr(app, "__authrelay_django__", False):
        return True
    try:
        from django.core.handlers.base import BaseHandler
    except ImportError:
        return False
    return isinstance(app, BaseHandler)


def _django_routes(patterns: Iterable[Any], prefix: str) -> Iterator[RouteDeclaration]:
    for pattern in patterns:
        path = prefix + str(pattern.pattern).lstrip("^").rstrip("$")  # re_path() anchors
        children = getattr(pattern, "url_patterns", None)
        if children is not None:  # include(...)
            yield from _django_routes(children, path)
            continue
        services, scopes = declared(pattern.callback)
        yield RouteDeclaration(("*",), "/" + path, services, scopes)
