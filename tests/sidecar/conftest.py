"""The sidecar tests reuse the service fixtures (provider, downstream API, relays)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "services"))

from svc_fixtures import (
    clean_idp,
    downstream,
    downstream_server,
    downstream_url,
    idp,
    make_relay,
)

__all__ = ["clean_idp", "downstream", "downstream_server", "downstream_url", "idp", "make_relay"]
