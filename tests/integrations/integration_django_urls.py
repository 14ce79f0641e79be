"""Django URLconf of the end-to-end tests (the same routes as ``integration_apps``)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path
from integration_apps import describe

from authrelay import InsufficientScope
from authrelay.django import require


def _me(request: Any) -> JsonResponse:
    return JsonResponse(describe(request.principal, request.auth_credentials.scopes))


def open_route(request: HttpRequest) -> JsonResponse:
    return _me(request)


@require()
def me(request: HttpRequest) -> JsonResponse:
    return _me(request)


@require("orders.read")
async def orders(request: HttpRequest) -> JsonResponse:  # an async view
    return _me(request)


@require("orders.read")
def downstream(request: Any) -> JsonResponse:
    response = request.services["orders"].get("/echo")
    return JsonResponse(response.json(), status=response.status_code)


def call(request: Any, service: str) -> JsonResponse:
    response = request.services[service].get("/echo")
    return JsonResponse(response.json(), status=response.status_code)


def raises(request: HttpRequest) -> JsonResponse:
    raise InsufficientScope(scopes=("admin",))


urlpatterns = [
    path("raises", raises),
    path("open", open_route),
    path("me", me),
    path("orders", orders),
    path("downstream", downstream),
    path("call/<str:service>", call),
]
