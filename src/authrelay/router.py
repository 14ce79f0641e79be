"""The routes under ``routes.prefix``: ``/stats``, the connector routes, and not found.

One table for every shell: the ASGI, WSGI and Django middlewares reach it only through
:class:`authrelay.pipeline.Pipeline`, so a route added here is served by all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._io import Flow
from .responses import Response, json_response
from .routing import AuthRequest

if TYPE_CHECKING:
    from .relay import Relay

__all__ = ["Router", "no_routes", "not_found"]


def not_found() -> Response:
    """The answer for a path under the prefix that names no route."""
    return json_response({"error": "not_found"}, 404)


def no_routes(request: AuthRequest) -> Flow[Response]:
    """The connector routes of a relay without connectors: every path is not found."""
    yield from ()
    return not_found()


class Router:
    """Serves a request under the prefix: ``/stats`` when enabled, else the connectors."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.stats = relay.settings.routes.stats

    def handle(self, request: AuthRequest) -> Flow[Response]:
        """The response for ``request`` (a flow; ``request.path`` is relative to the prefix)."""
        if request.path == "/stats" and self.stats:
            if request.method != "GET":
                return json_response({"error": "method_not_allowed"}, 405, [("allow", "GET")])
            return json_response(self.relay.stats())
        # The connector routes (login, callback, logout, ``/connectors``, admin), if any.
        response = yield from self.relay.route_handler(request)
        return response
