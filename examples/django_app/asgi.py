"""ASGI entry point: ``uvicorn examples.django_app.asgi:application``."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application
from examples.local_provider import apply_defaults

from authrelay.django import with_lifespan

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
apply_defaults()  # examples/authrelay.toml's variables, as `authrelay idp` serves them
application = with_lifespan(get_asgi_application())  # closes authrelay's clients at exit
