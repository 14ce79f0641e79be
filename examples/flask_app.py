"""authrelay with Flask: run ``flask --app examples.flask_app run``.

Settings come from ``examples/authrelay.toml`` (its ``${VAR}``s from the environment),
or from the caller of :func:`create_app`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from authrelay import Relay, Settings
from authrelay.flask import credentials, init_app, principal, require, services

SETTINGS_FILE = Path(__file__).with_name("authrelay.toml")


def create_app(settings: Settings | None = None, *, relay: Relay | None = None) -> Flask:
    """The example app; settings default to ``examples/authrelay.toml``."""
    app = Flask(__name__)
    if relay is None:
        relay = Relay(settings or Settings.from_toml(SETTINGS_FILE))
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
    def orders() -> Any:
        """Calls the orders service on behalf of the caller (a token is fetched on first use)."""
        response = services()["orders"].get("/orders")
        return response.json(), response.status_code

    return app


app = create_app()
