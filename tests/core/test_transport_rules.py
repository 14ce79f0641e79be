"""TR-04, TR-05, BR-02: requests cannot steer routing or URLs through headers or the query."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from authrelay import AuthRelayMiddleware, Settings
from authrelay.relay import Relay


def relay() -> Relay:
    return Relay(
        Settings.model_validate(
            {
                "secret_keys": ["k" * 32],
                "public_base_url": "https://app.example",
                "bearer": {"issuer": "https://idp.example", "audience": "api://app"},
                "connectors": {
                    "idp": {
                        "standard": "oauth2",
                        "client_id": "app",
                        "client_secret": "s",
                        "authorization_endpoint": "https://idp.example/authorize",
                        "token_endpoint": "https://idp.example/token",
                        "userinfo_endpoint": "https://idp.example/userinfo",
                    }
                },
            }
        )
    )


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"path": request.url.path, "user": request.user.identity})


def client() -> TestClient:
    app = Starlette(routes=[Route("/{path:path}", echo)])
    app.add_middleware(AuthRelayMiddleware, relay=relay())
    return TestClient(app, base_url="https://app.example", follow_redirects=False)


def test_tr05_forwarded_headers_never_change_the_redirect_uri() -> None:
    with client() as http:
        response = http.get(
            "/auth/idp/login",
            headers={
                "host": "evil.example",
                "x-forwarded-host": "evil.example",
                "x-forwarded-proto": "http",
                "forwarded": "host=evil.example;proto=http",
            },
        )
    assert response.status_code in (302, 303)
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["redirect_uri"] == ["https://app.example/auth/idp/callback"]


def test_tr04_routing_uses_the_path_never_rewrite_headers_or_query() -> None:
    with client() as http:
        spoofed = http.get("/public", headers={"x-original-url": "/auth/idp/login"})
        assert spoofed.status_code == 200 and spoofed.json()["path"] == "/public"
        lookalike = http.get("/authx/idp/login")
        assert lookalike.status_code == 200 and lookalike.json()["path"] == "/authx/idp/login"
        in_query = http.get("/public?next=/auth/idp/login")
        assert in_query.status_code == 200


def test_br02_token_in_query_is_not_accepted() -> None:
    with client() as http:
        response = http.get("/public?access_token=eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
    assert response.status_code == 200 and response.json()["user"] == ""


def test_br03_header_and_query_token_together_is_invalid_request() -> None:
    with client() as http:
        response = http.get(
            "/public?access_token=abc",
            headers={"authorization": "Bearer abc", "accept": "application/json"},
        )
    assert response.status_code == 400
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_request"'
