"""Effective configuration: config.py defaults < config file < TANGRAM_* environment < CLI flags.

The config file is TOML (sections as in config.py) or a run's own `config.json`: `--config
exports/RUN/config.json` repeats that run's settings (secrets were never written; they come from
the environment as usual)."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from config import ENV_ALIASES, TangramConfig, default_config
from tangram.errors import TangramError

SECRET_FIELDS: frozenset[tuple[str, str]] = frozenset({("planning", "api_key")})


def load_config(
    config_path: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> TangramConfig:
    """Merge the layers; raise TangramError naming the bad setting."""
    data = default_config().model_dump()
    if config_path is not None:
        _merge(data, read_config_file(Path(config_path)), "config file", keep_none=True)
    _merge(data, _env_layer(os.environ if env is None else env), "environment")
    _merge(data, overrides or {}, "command line")
    try:
        return TangramConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise TangramError(f"invalid setting {where}: {err['msg']}") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML file, or JSON (a run's `config.json`) when the name ends in .json."""
    if not path.is_file():
        raise TangramError(f"config file not found: {path}")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise TangramError(f"config file {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise TangramError(f"config file {path} must hold one object of sections, as a run's config.json does")
        return data
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise TangramError(f"config file {path} is not valid TOML: {exc}") from None


def _env_layer(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """TANGRAM_<SECTION>_<FIELD> for every field, plus the aliases in config.ENV_ALIASES."""
    layer: dict[str, dict[str, Any]] = {}
    for section, model in TangramConfig.model_fields.items():
        for field in model.annotation.model_fields:  # type: ignore[union-attr]
            value = env.get(f"TANGRAM_{section}_{field}".upper())
            if value is not None:
                layer.setdefault(section, {})[field] = _parse_env_value(value)
    for name, (section, field) in ENV_ALIASES.items():
        if env.get(name):
            layer.setdefault(section, {}).setdefault(field, _parse_env_value(env[name]))
    return layer


def _parse_env_value(value: str) -> Any:
    """Lists arrive as comma-separated text; pydantic coerces numbers and booleans itself."""
    if value.startswith("[") and value.endswith("]"):
        return [v.strip() for v in value[1:-1].split(",") if v.strip()]
    return value


def _merge(data: dict[str, Any], layer: Mapping[str, Any], origin: str, keep_none: bool = False) -> None:
    """Update `data` section by section. None means "not given" on the command line; a file's
    null (JSON only: TOML has none) is a value, so a run's config.json comes back exactly."""
    for section, values in layer.items():
        if section not in data:
            raise TangramError(f"unknown config section [{section}] in {origin}")
        if not isinstance(values, Mapping):
            raise TangramError(f"config section [{section}] in {origin} must be a table")
        data[section].update({k: v for k, v in values.items() if keep_none or v is not None})


def public_dict(config: TangramConfig) -> dict[str, Any]:
    """The config as JSON-ready data with secrets removed: safe for run folders and remote hosts."""
    data = config.model_dump(mode="json")
    for section, field in SECRET_FIELDS:
        data[section].pop(field, None)
    return data


def secret_values(config: TangramConfig) -> list[str]:
    """Secret strings set in this config, so loggers can redact them."""
    values = []
    for section, field in SECRET_FIELDS:
        value = getattr(getattr(config, section), field)
        if isinstance(value, SecretStr) and value.get_secret_value():
            values.append(value.get_secret_value())
    return values
