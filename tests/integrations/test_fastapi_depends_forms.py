"""The FastAPI forms the README shows: ``Depends(require(...))`` and ``ServiceClient``."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI
from integration_support import relay_settings

from authrelay import AuthRelayMiddleware, Principal, Settings
from authrelay.fastapi import Service, ServiceClient, require
from authrelay.testing import IdentityProvider
from authrelay.testing.servers import serve_asgi


def test_require_works_bare_and_inside_depends(idp: IdentityProvider, downstream: str) -> None:
    app = FastAPI()
    settings = Settings.model_validate(relay_settings(idp.issuer, downstream))
    app.add_middleware(AuthRelayMiddleware, settings=settings)

    @app.get("/wrapped", dependencies=[Depends(require(scopes=["orders.read"]))])
    async def wrapped(orders: Annotated[ServiceClient, Service("orders")]) -> Any:
        return (await orders.get("/echo")).json()

    @app.get("/bare", dependencies=[require(scopes=["orders.read"])])
    async def bare() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/param")
    async def param(
        user: Annotated[Principal, Depends(require(scopes="orders.read"))],
    ) -> dict[str, Any]:
        return {"sub": user.subject}

    with serve_asgi(app) as base:
        reader = {"Authorization": f"Bearer {idp.mint_access_token(scope='orders.read')}"}
        writer = {"Authorization": f"Bearer {idp.mint_access_token(scope='orders.write')}"}
        response = httpx.get(f"{base}/wrapped", headers=reader)
        assert response.status_code == 200, response.text
        assert response.json()["authorized"] is True
        assert httpx.get(f"{base}/wrapped", headers=writer).status_code == 403
        assert httpx.get(f"{base}/wrapped").status_code == 401
        assert httpx.get(f"{base}/bare", headers=reader).json() == {"ok": True}
        assert httpx.get(f"{base}/bare", headers=writer).status_code == 403
        assert httpx.get(f"{base}/param", headers=reader).json() == {"sub": "alice"}
        assert httpx.get(f"{base}/param", headers=writer).status_code == 403
        schema = httpx.get(f"{base}/openapi.json").json()
        for path in ("/wrapped", "/bare", "/param"):
            assert schema["paths"][path]["get"].get("parameters", []) == [], path
