"""Test helpers: a strict in-process identity provider and loopback servers.

``IdentityProvider`` is an OAuth 2.0 authorization server and OpenID Provider for tests;
see ``docs/testing.md``. The pytest plugin (fixtures ``identity_provider``,
``identity_provider_server``, ``make_identity_provider``) is registered automatically.
"""

from __future__ import annotations

from .clock import FakeClock
from .faults import Counters, Fault, Faults
from .flows import FlowStepper, run_flow
from .models import OAuthClient, Resource, TestUser
from .provider import IdentityProvider, serve_identity_provider
from .servers import free_port, serve_asgi, serve_wsgi
from .transports import SyncASGITransport

__all__ = [
    "Counters",
    "FakeClock",
    "Fault",
    "Faults",
    "FlowStepper",
    "IdentityProvider",
    "OAuthClient",
    "Resource",
    "SyncASGITransport",
    "TestUser",
    "free_port",
    "run_flow",
    "serve_asgi",
    "serve_identity_provider",
    "serve_wsgi",
]
