"""Django settings of the example: only what authrelay needs."""

from __future__ import annotations

import os

from examples.local_provider import SETTINGS_FILE

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "examples.django_app.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["authrelay.django.AuthRelayMiddleware"]
USE_TZ = True

# authrelay's settings: a TOML file (its ${VAR}s from the environment) or AUTHRELAY = {...}.
# The entry points (wsgi.py, asgi.py) default those variables to `authrelay idp`'s values.
AUTHRELAY_SETTINGS_FILE = SETTINGS_FILE
