"""Base model for every settings section: frozen, strict about unknown keys."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A frozen settings section that refuses unknown keys (typos must not pass)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
