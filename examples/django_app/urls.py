"""URLs of the Django example."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.home),
    path("me", views.me),
    path("scopes", views.scopes),
    path("orders", views.orders),
]
