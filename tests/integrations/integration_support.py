"""Helpers of the end-to-end identity tests: settings, served apps, session cookies."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from authrelay import Relay, Settings
from authrelay.identity.session import SessionRecord
from authrelay.testing.servers import serve_asgi, serve_wsgi

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the examples' Django settings live in examples/
    sys.path.insert(0, str(ROOT))

SECRET = "integration-tests-secret-key-0123456789"


@dataclass(frozen=True)
class Served:
    """An app running on a loopback port, and the relay behind it."""

    name: str
    url: str
    relay: Relay


def relay_settings(issuer: str, downstream_url: str) -> dict[str, Any]:
    """Settings of the apps under test, as the mapping ``Settings.model_validate`` takes."""
    return {
        "secret_keys": [SECRET],
        "public_base_url": "http://127.0.0.1:8000",
        "session": {"dev_insecure_cookies": True},
        "http": {"allow_insecure_loopback": True},
        "bearer": {"issuer": issuer, "audience": "api://orders"},
        "connectors": {
            "idp": {
                "standard": "oidc",
                "issuer": issuer,
                "client_id": "test-client",
                "client_secret": "test-secret",
            }
        },
        "services": {
            "orders": {
                "base_url": downstream_url,
                "flow": "forward",
                "audience": "api://orders",
                "allow_http": True,
            }
        },
    }


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
    import django

    django.setup()


@contextmanager
def serve_django(mapping: dict[str, Any], *, asgi: bool) -> Iterator[Served]:
    """The Django test URLconf under WSGI or ASGI, with ``AUTHRELAY = mapping``."""
    setup_django()
    from django.test.utils import override_settings

    from authrelay.django import get_relay, with_lifespan

    with override_settings(
        ROOT_URLCONF="integration_django_urls", AUTHRELAY=mapping, AUTHRELAY_SETTINGS_FILE=None
    ):
        server: AbstractContextManager[str]
        if asgi:
            from django.core.asgi import get_asgi_application

            server = serve_asgi(with_lifespan(get_asgi_application()))
        else:
            from django.core.wsgi import get_wsgi_application

            server = serve_wsgi(get_wsgi_application())
        relay = get_relay()
        with server as url:
            yield Served("django-asgi" if asgi else "django-wsgi", url, relay)


@contextmanager
def serve_framework(name: str, mapping: dict[str, Any]) -> Iterator[Served]:
    """``name``'s test app on a loopback port."""
    import integration_apps

    if name.startswith("django"):
        with serve_django(mapping, asgi=name == "django-asgi") as served:
            yield served
        return
    relay = Relay(Settings.model_validate(mapping))
    if name in ("flask", "wsgi"):
        app = integration_apps.flask_app(relay) if name == "flask" else None
        with serve_wsgi(app or integration_apps.wsgi_app(relay)) as url:
            yield Served(name, url, relay)
        relay.close()
        return
    app = integration_apps.starlette_app(relay) if name == "starlette" else None
    app = app or integration_apps.fastapi_app(relay)
    with serve_asgi(app) as url:
        yield Served(name, url, relay)


def session_cookie(relay: Relay, subject: str = "alice", name: str = "Alice") -> str:
    """A ``Cookie`` header value for a fresh server-side session of ``subject``."""
    record = SessionRecord(subject=subject, claims={"name": name}, created_at=relay.clock())
    set_cookie = relay.sync_driver.run(relay.sessions.create(record))
    return set_cookie.split(";", 1)[0]
