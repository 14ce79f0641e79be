"""The request as the connector routes see it, framework-neutral."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from .errors import CallbackError
from .identity.resolve import Resolution

__all__ = ["AuthRequest"]


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """A request under ``routes.prefix``, with the caller already resolved.

    ``path`` is relative to the prefix (``/github/login``); ``headers`` has lower-case
    names and the first value of each; ``body`` is read in full (bounded) for POSTs.
    """

    method: str
    path: str
    query_string: bytes
    headers: Mapping[str, str]
    identity: Resolution
    body: bytes = b""
    scheme: str = "http"
    client_host: str | None = None
    _query: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _form: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def query(self) -> dict[str, list[str]]:
        """Query parameters, each name to all its values (strict UTF-8, no blanks dropped)."""
        if not self._query and self.query_string:
            try:
                pairs = parse_qsl(
                    self.query_string.decode("latin-1"), keep_blank_values=True, max_num_fields=64
                )
            except ValueError:  # more than 64 fields: a clear 400, the same in both shells
                raise CallbackError("invalid_request", "too many query parameters") from None
            for key, value in pairs:
                self._query.setdefault(key, []).append(value)
        return self._query

    def param(self, name: str) -> str | None:
        """The single value of a query parameter; None when absent or repeated."""
        values = self.query().get(name)
        return values[0] if values is not None and len(values) == 1 else None

    def form(self) -> dict[str, list[str]]:
        """Fields of an ``application/x-www-form-urlencoded`` body."""
        if not self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return {}
        fields = self._form
        if fields or not self.body:
            return fields
        try:
            pairs = parse_qsl(
                self.body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=64
            )
        except ValueError:  # more than 64 fields
            raise CallbackError("invalid_request", "too many form fields") from None
        for key, value in pairs:
            fields.setdefault(key, []).append(value)
        return fields
