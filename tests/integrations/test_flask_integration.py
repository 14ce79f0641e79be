"""Flask specifics: ``init_app`` and a clear error when the middleware is missing."""

from __future__ import annotations

import flask
import pytest
from integration_support import SECRET

from authrelay import Relay, Settings
from authrelay.flask import init_app, principal, require


def test_init_app_shares_its_relay_through_the_app() -> None:
    app = flask.Flask(__name__)
    relay = init_app(app, settings=Settings(secret_keys=[SECRET]))
    assert isinstance(relay, Relay)
    assert app.extensions["authrelay"] is relay


def test_a_view_without_the_middleware_gets_a_clear_error() -> None:
    app = flask.Flask(__name__)

    @app.get("/")
    def home() -> str:
        return principal().display_name

    with app.test_request_context("/"), pytest.raises(RuntimeError, match="init_app"):
        home()


def test_require_on_an_async_view_refuses_anonymous() -> None:
    app = flask.Flask(__name__)
    init_app(app, settings=Settings(secret_keys=[SECRET]))

    @app.get("/me")
    @require()
    async def me() -> str:
        return principal().subject or ""

    response = app.test_client().get("/me", headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="authrelay"'
