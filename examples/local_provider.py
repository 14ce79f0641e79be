"""What the examples use when the environment does not say otherwise.

The defaults are those of ``authrelay idp`` (the test identity provider on
``http://127.0.0.1:9000`` and its ``test-client``), so an example runs with one command
beside it. Set ``AUTHRELAY_ISSUER``, ``AUTHRELAY_CLIENT_SECRET``, ``ORDERS_URL`` and
``AUTHRELAY_SECRET`` to run against anything else.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from authrelay import Settings

SETTINGS_FILE = Path(__file__).with_name("authrelay.toml")

LOCAL_DEFAULTS = {
    "AUTHRELAY_ISSUER": "http://127.0.0.1:9000",  # authrelay idp
    "AUTHRELAY_CLIENT_SECRET": "test-secret",  # its test-client
    "ORDERS_URL": "http://127.0.0.1:9100",  # a downstream API that accepts api://orders
}

# Without AUTHRELAY_SECRET each process seals cookies with a key of its own: sessions end
# when it stops, and several workers need the variable set.
_PROCESS_SECRET = secrets.token_urlsafe(32)


def settings_env() -> dict[str, str]:
    """The environment, over the local defaults."""
    return {**LOCAL_DEFAULTS, "AUTHRELAY_SECRET": _PROCESS_SECRET, **os.environ}


def apply_defaults() -> None:
    """Set each variable the environment lacks (for entry points that read ``os.environ``)."""
    for name, value in settings_env().items():
        os.environ.setdefault(name, value)


def load_settings() -> Settings:
    """``examples/authrelay.toml`` with its ``${VAR}``s from :func:`settings_env`."""
    return Settings.from_toml(SETTINGS_FILE, env=settings_env())
