"""Settings from environment variables and ``.env`` files, read by pydantic-settings.

``AUTHRELAY_BEARER__ISSUER=...``: the prefix, then the field path joined by ``__``.
Values of string fields stay strings (``AUTHRELAY_CLIENT__CLIENT_ID=1234567`` is the id
``"1234567"``); list and dict fields take JSON; ``secret_keys`` also takes a
comma-separated list. The process environment wins over a ``.env`` file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import DotEnvSettingsSource, EnvSettingsSource, SettingsError

try:
    from pydantic_settings.sources.utils import parse_env_vars
except ImportError:  # pydantic-settings < 2.7 keeps it in one sources module
    from pydantic_settings.sources import parse_env_vars  # type: ignore[attr-defined,no-redef]

from ..errors import ConfigurationError
from ._base import suggestion

__all__ = ["env_data"]

DELIMITER = "__"


class _Source(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping of variables."""

    def __init__(self, model: type[BaseModel], variables: Mapping[str, str], prefix: str) -> None:
        self._variables = variables
        self.bad_json = False
        """A list or dict value did not parse (older pydantic-settings swallow the error)."""
        super().__init__(
            model,  # type: ignore[arg-type]  # only model_fields and model_config are read
            case_sensitive=False,
            env_prefix=prefix,
            env_nested_delimiter=DELIMITER,
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._variables, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        """JSON for lists and dicts; ``secret_keys`` may also be ``key1,key2``.

        A value that is not a JSON list or object is passed on as a string: a setting
        that takes one string or a list (``bearer.audience``) accepts it, and any other
        is refused by validation with its path.
        """
        text = str(value).strip()
        if field_name == "secret_keys" and not text.startswith("["):
            return [part.strip() for part in text.split(",") if part.strip()]
        if not text.startswith(("[", "{")):
            return value
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            self.bad_json = True
            raise


def env_data(
    model: type[BaseModel],
    prefix: str,
    env: Mapping[str, str] | None,
    env_file: str | os.PathLike[str] | None,
) -> dict[str, Any]:
    """The settings mapping found in ``env`` (default: ``os.environ``) and ``env_file``.

    Raises :class:`ConfigurationError` for a variable with the prefix that names no
    setting, or a list / dict value that is not JSON.
    """
    variables: dict[str, str] = {}
    if env_file is not None:
        dotenv = DotEnvSettingsSource(
            model,  # type: ignore[arg-type]
            env_file=Path(env_file),
            case_sensitive=True,
        )
        variables.update({k: v for k, v in dotenv.env_vars.items() if v is not None})
    variables.update(os.environ if env is None else env)
    problems = _unknown(model, prefix, variables)
    source = _Source(model, variables, prefix)
    try:
        data = source()
    except SettingsError:
        source.bad_json, data = True, {}
    if source.bad_json:
        problems.extend(_bad_json(prefix, variables))
    if problems:
        raise ConfigurationError(problems)
    return data


def _bad_json(prefix: str, variables: Mapping[str, str]) -> list[str]:
    """Name the variables that look like JSON lists or objects and do not parse."""
    problems = []
    for name, value in variables.items():
        if not name.upper().startswith(prefix.upper()):
            continue
        if value.strip().startswith(("[", "{")):
            try:
                json.loads(value)
            except ValueError:
                path = ".".join(name[len(prefix) :].lower().split(DELIMITER))
                problems.append(
                    f"{path}: the value of {name} is not valid JSON (list and dict settings "
                    'are given as JSON, like ["a", "b"] or {"key": "value"})'
                )
    return sorted(problems) or ["the environment: a list or dict setting is not valid JSON"]


def _unknown(model: type[BaseModel], prefix: str, variables: Mapping[str, str]) -> list[str]:
    """Variables with the prefix whose first name is no setting (pydantic-settings skips them)."""
    problems = []
    fields = list(model.model_fields)
    for name in variables:
        if not name.upper().startswith(prefix.upper()):
            continue
        first = name[len(prefix) :].split(DELIMITER, 1)[0].lower()
        if first not in fields:
            problems.append(f"{first}: unknown setting (from {name}){suggestion(first, fields)}")
    return sorted(problems)
