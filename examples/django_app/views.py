"""Views of the Django example: open, signed-in, scoped, and one calling a service."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from authrelay.django import require, uses
from authrelay.services import SyncServiceClient


def home(request: HttpRequest) -> JsonResponse:
    """Open to everyone; says who is calling, if anyone."""
    user = request.principal  # type: ignore[attr-defined]
    return JsonResponse({"signed_in": user.is_authenticated, "name": user.display_name})


@require()
def me(request: HttpRequest) -> JsonResponse:
    """Signed-in callers only (401 for APIs, a login redirect for browsers)."""
    user = request.principal  # type: ignore[attr-defined]
    return JsonResponse({"subject": user.subject, "kind": user.kind, "name": user.display_name})


@require("orders.read")
def scopes(request: HttpRequest) -> JsonResponse:
    """Callers whose token carries ``orders.read`` (403 insufficient_scope otherwise)."""
    return JsonResponse({"scopes": sorted(request.auth_credentials.scopes)})  # type: ignore[attr-defined]


@require("orders.read")
@uses("orders")  # checked against the settings when Django loads the middleware
def orders(request: HttpRequest, orders: SyncServiceClient) -> JsonResponse:
    """Calls the orders service for the caller (sync view: sync client, WSGI or ASGI)."""
    response = orders.get("/orders")
    return JsonResponse(response.json(), status=response.status_code, safe=False)
