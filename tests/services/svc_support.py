"""Helpers for the service tests: a clock, a principal-checking downstream API, settings."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from authrelay.testing.provider import IdentityProvider

APP_SECRET = "app-secret-canary-9f2c1e"
AGENT_SECRET = "agent-secret-canary-77ab"
API_KEY = "api-key-canary-5d1e0f"
COPILOT_ID = "6f1c2a3b-4d5e-4f60-8a9b-0c1d2e3f4a5b"
"""An Entra agent identity (blueprint: the "app" client) and its agent user."""
ADA_OID = "3e9d8c7b-6a5f-4e3d-9c2b-1a0f9e8d7c6b"
ADA_UPN = "ada@contoso.example"
SCOUT_ID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
"""Another agent identity of the same blueprint, with its own agent user."""
GRACE_OID = "7b6a5f4e-3d2c-4b1a-8f9e-8d7c6b5a4f3e"


class Downstream:
    """A downstream API that checks, per request, whom its token was minted for (INV-3)."""

    def __init__(self, idp: IdentityProvider) -> None:
        self.idp = idp
        self.seen: list[dict[str, Any]] = []
        self.reject_next = 0
        self.app = Starlette(
            routes=[
                Route("/whoami", self.whoami, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
                Route("/status/{code:int}", self.status, methods=["GET", "POST"]),
                Route("/nested/{depth:int}", self.nested),
                Route("/redirect", self.redirect),
                Route("/set-cookie", self.set_cookie),
            ]
        )

    def _record(self, request: Request) -> dict[str, Any]:
        auth = request.headers.get("authorization", "")
        entry: dict[str, Any] = {
            "authorization": auth,
            "cookie": request.headers.get("cookie"),
            "x_api_key": request.headers.get("x-api-key"),
            "query": dict(request.query_params),
            "expect": request.headers.get("x-expect-sub"),
        }
        claims: dict[str, Any] | None = None
        if auth.startswith("Bearer "):
            verified = self.idp.keys.verify(auth[7:])
            claims = verified[1] if verified else None
        entry["claims"] = claims
        self.seen.append(entry)
        return entry

    async def whoami(self, request: Request) -> Any:
        entry = self._record(request)
        if self.reject_next > 0:
            self.reject_next -= 1
            return PlainTextResponse(
                "expired", 401, headers={"www-authenticate": 'Bearer error="invalid_token"'}
            )
        claims = entry["claims"]
        expect = entry["expect"]
        if expect is not None:
            # INV-3: the token must have been minted for the principal the app serves.
            sub = (claims or {}).get("sub")
            app_only = claims is not None and sub == claims.get("client_id")
            if sub != expect and not app_only:
                return JSONResponse({"error": "wrong_principal", "sub": sub}, 403)
        body = await request.body()
        return JSONResponse(
            {
                "sub": (claims or {}).get("sub"),
                "aud": (claims or {}).get("aud"),
                "act": (claims or {}).get("act"),
                "scope": (claims or {}).get("scope"),
                "client_id": (claims or {}).get("client_id"),
                "body": body.decode(),
            }
        )

    async def status(self, request: Request) -> Any:
        self._record(request)
        return JSONResponse({"status": request.path_params["code"]}, request.path_params["code"])

    async def nested(self, request: Request) -> Any:
        depth = request.path_params["depth"]
        body = '{"a":' + "[" * depth + "]" * depth + "}"
        return Response(body, media_type="application/json")

    async def redirect(self, request: Request) -> Any:
        self._record(request)
        return PlainTextResponse("", 302, headers={"location": request.query_params["to"]})

    async def set_cookie(self, request: Request) -> Any:
        self._record(request)
        return PlainTextResponse("ok", headers={"set-cookie": "sid=downstream-secret; Path=/"})


def service_table(downstream_url: str) -> dict[str, dict[str, Any]]:
    """Every flow, all pointing at the downstream API."""
    base = {"base_url": downstream_url, "allow_http": True}
    return {
        "orders": {**base, "flow": "token_exchange", "audience": "api://orders",
                   "scopes": ["orders.read"]},
        "calendar": {**base, "flow": "token_exchange", "audience": "api://orders",
                     "scopes": ["orders.read"], "actor": "planner"},
        "obo": {**base, "flow": "on_behalf_of", "scopes": ["api://orders/orders.read"]},
        "billing": {**base, "flow": "client_credentials", "audience": "api://billing",
                    "scopes": ["billing.read"]},
        "passthrough": {**base, "flow": "forward", "audience": "api://app"},
        "keyed": {**base, "flow": "api_key",
                  "api_key": {"value": API_KEY, "header": "X-Api-Key", "scheme": None}},
        "github": {**base, "flow": "connector", "connector": "github"},
    }  # fmt: skip


def caller_token(idp: IdentityProvider, sub: str = "alice", expires_in: int = 3600) -> str:
    """A bearer token for the app's own API, as an API caller would present it."""
    return idp.mint_access_token(
        sub=sub, audience="api://app", scope="app.use", client_id="caller", expires_in=expires_in
    )
