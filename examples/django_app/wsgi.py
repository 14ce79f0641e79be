"""WSGI entry point: ``application`` for any WSGI server."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application
from examples.local_provider import apply_defaults

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
apply_defaults()  # examples/authrelay.toml's variables, as `authrelay idp` serves them
application = get_wsgi_application()
