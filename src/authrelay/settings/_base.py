"""Base model for every settings section, and how validation errors are told to users."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class Section(BaseModel):
    """A frozen settings section that refuses unknown keys (typos must not pass).

    A model validator names the field it is about by starting its message with
    ``"<field>: "``; the error is then reported at ``<section path>.<field>``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


def describe(exc: ValidationError, model: type[BaseModel], where: str = "") -> list[str]:
    """``path: reason`` for each error of ``exc`` raised while validating ``model``.

    Unknown keys get the nearest known key of their section as a suggestion; a message
    that starts with a field name of its section is moved onto that field's path.
    """
    problems: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in error["loc"]]
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden" and loc:
            message = "unknown setting" + suggestion(loc[-1], _fields_at(model, loc[:-1]))
            problems.append(f"{_join(where, loc)}: {message}")
            continue
        parts = message.split("\n") if error["type"] == "value_error" else [message]
        fields = _fields_at(model, loc)
        for part in parts:
            head, sep, rest = part.partition(": ")
            if sep and head in fields:
                problems.append(f"{_join(where, [*loc, head])}: {rest}")
            elif _join(where, loc):
                problems.append(f"{_join(where, loc)}: {part}")
            else:
                problems.append(part)
    return problems


def _join(where: str, loc: Sequence[str]) -> str:
    return ".".join(part for part in (where, *loc) if part)


def suggestion(key: str, known: Sequence[str]) -> str:
    """``; did you mean 'x'?`` for the nearest of ``known``, else a hint to check spelling."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else " (is it misspelled?)"


def _fields_at(model: type[BaseModel], loc: Sequence[str]) -> list[str]:
    """Field names of the section found by following ``loc`` from ``model``."""
    current: Any = model
    for part in loc:
        section = _section_of(current)
        if section is not None:
            field = section.model_fields.get(part)
            if field is None:
                return []
            current = field.annotation
            continue
        mapped = _mapped_section(current)
        if mapped is None:
            return []
        current = mapped
    section = _section_of(current)
    return list(section.model_fields) if section is not None else []


def _section_of(annotation: Any) -> type[BaseModel] | None:
    """The model in ``Model`` or ``Model | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
    return None


def _mapped_section(annotation: Any) -> Any:
    """The value type of ``dict[str, V]`` (the section under a name such as a service's)."""
    if typing.get_origin(annotation) is dict:
        return typing.get_args(annotation)[1]
    return None
