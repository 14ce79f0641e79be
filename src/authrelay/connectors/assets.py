"""Logos and readmes shipped with the presets and standard connectors, served under
``{prefix}/connectors/{name}/logo`` (``logo-dark``, ``readme``).

A metadata ``logo`` / ``logo_dark`` / ``readme`` is either a path inside the package
(``connectors/logos/github.svg``: served by these routes) or a URL or absolute path the
app gives (``https://…``, ``/static/…``: passed through as it is).

Defends against: content sniffing of served files (``X-Content-Type-Options: nosniff``
and a fixed content type), script in a same-origin SVG (a ``sandbox`` CSP with
``default-src 'none'``), and path traversal (only files named in a connector's metadata
are served, read through :mod:`importlib.resources`, never a path from the request).
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources

from ..responses import Response, json_response
from ..routing import AuthRequest
from .metadata import ConnectorMetadata

__all__ = ["ASSET_ROUTES", "asset_url", "serve_asset"]

ASSET_ROUTES = {"logo": "logo", "logo-dark": "logo_dark", "readme": "readme"}
"""Route name → metadata field."""
_TYPES = {".svg": "image/svg+xml", ".md": "text/markdown; charset=utf-8"}
_CACHE = "public, max-age=86400"
_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


def _packaged(reference: str) -> bool:
    return not reference.startswith(("/", "http://", "https://", "data:"))


@cache
def _read(reference: str) -> tuple[bytes, str] | None:
    """The file's bytes and its ETag, or None when the package has no such file."""
    parts = reference.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    node = resources.files("authrelay")
    for part in parts:
        node = node.joinpath(part)
    try:
        data = node.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def asset_url(prefix: str, name: str, meta: ConnectorMetadata, route: str) -> str | None:
    """What ``GET {prefix}/connectors`` shows for a logo or readme of connector ``name``."""
    reference: str | None = getattr(meta, ASSET_ROUTES[route])
    if not reference:
        return None
    if _packaged(reference) and _read(reference) is not None:
        return f"{prefix}/connectors/{name}/{route}"
    return reference  # the app's own URL or path, as configured


def serve_asset(meta: ConnectorMetadata, route: str, request: AuthRequest) -> Response:
    """``GET {prefix}/connectors/{name}/{route}``: the packaged file, cacheable."""
    reference: str | None = getattr(meta, ASSET_ROUTES[route])
    found = _read(reference) if reference and _packaged(reference) else None
    if reference is None or found is None:
        return json_response({"error": "not_found"}, 404)
    data, etag = found
    content_type = next((t for ext, t in _TYPES.items() if reference.endswith(ext)), None)
    if content_type is None:
        return json_response({"error": "not_found"}, 404)
    headers = [
        ("cache-control", _CACHE),
        ("etag", etag),
        ("x-content-type-options", "nosniff"),
        ("content-security-policy", _CSP),
    ]
    matches = request.headers.get("if-none-match", "")
    if etag in (tag.strip() for tag in matches.split(",")) or matches.strip() == "*":
        return Response(304, headers)
    return Response(200, [("content-type", content_type), *headers], data)
