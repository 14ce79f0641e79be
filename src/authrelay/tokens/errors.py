"""Errors of token acquisition, extending the tree in :mod:`authrelay.errors`."""

from __future__ import annotations

from ..errors import UpstreamError

__all__ = ["TokenEndpointUnavailable"]


class TokenEndpointUnavailable(UpstreamError):
    """The token endpoint cannot be reached or asked to come back later (503, Retry-After)."""

    error = "temporarily_unavailable"
    status = 503
