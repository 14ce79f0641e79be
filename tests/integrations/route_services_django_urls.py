"""URLconf of the route-services tests: views declaring their services with ``@uses``."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path

from authrelay.django import require, uses
from authrelay.services import AsyncServiceClient, SyncServiceClient


@require("orders.read")
@uses("Orders")
def sync_echo(request: HttpRequest, orders: SyncServiceClient) -> JsonResponse:
    return JsonResponse(orders.get("/echo").json())


@uses("orders")
async def async_echo(request: HttpRequest, orders: AsyncServiceClient) -> JsonResponse:
    return JsonResponse((await orders.get("/echo")).json())


urlpatterns = [path("sync", sync_echo), path("async", async_echo)]
