"""Fixtures: the test identity provider and a downstream API on loopback, relays."""

from __future__ import annotations

from svc_fixtures import clean_idp, downstream, downstream_server, downstream_url, idp, make_relay

__all__ = ["clean_idp", "downstream", "downstream_server", "downstream_url", "idp", "make_relay"]
