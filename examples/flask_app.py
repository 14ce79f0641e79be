"""authrelay with Flask.

Run it from the project root, against the test identity provider::

    authrelay idp                                   # in one terminal
    flask --app examples.flask_app run --port 8000  # in another

then open http://127.0.0.1:8000/me (sign in as alice). Settings come from
``examples/authrelay.toml``; its ``${VAR}``s default to ``authrelay idp``'s values (see
``examples/local_provider.py``), or come from the caller of :func:`create_app`.
"""

from __future__ import annotations

from typing import Any

from examples.local_provider import SETTINGS_FILE, load_settings
from flask import Flask

from authrelay import Relay, Settings
from authrelay.flask import credentials, init_app, principal, require, uses
from authrelay.services import SyncServiceClient

__all__ = ["SETTINGS_FILE", "app", "create_app"]


def create_app(settings: Settings | None = None, *, relay: Relay | None = None) -> Flask:
    """The example app; settings default to ``examples/authrelay.toml``."""
    app = Flask(__name__)
    if relay is None:
        relay = Relay(settings or load_settings())
    init_app(app, relay=relay)

    @app.get("/")
    def home() -> dict[str, Any]:
        """Open to everyone; says who is calling, if anyone."""
        user = principal()
        return {"signed_in": user.is_authenticated, "name": user.display_name}

    @app.get("/me")
    @require()
    def me() -> dict[str, Any]:
        """Signed-in callers only (401 for APIs, a login redirect for browsers)."""
        user = principal()
        return {"subject": user.subject, "kind": user.kind, "name": user.display_name}

    @app.get("/scopes")
    @require("orders.read")
    def scopes() -> dict[str, Any]:
        """Callers whose token carries ``orders.read`` (403 insufficient_scope otherwise)."""
        return {"scopes": sorted(credentials().scopes)}

    @app.get("/orders")
    @require("orders.read")
    @uses("orders")  # checked against the settings before the first request
    def orders(orders: SyncServiceClient) -> Any:
        """Calls the orders service on behalf of the caller (a token is fetched on first use)."""
        response = orders.get("/orders")
        return response.json(), response.status_code

    return app


app = create_app()
