"""Reading docker-compose.yml as Docker Compose does, without a Docker engine: YAML 1.2 with
merge keys, then variable interpolation by the Compose Specification's rules
(12-interpolation.md): `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
`${VAR:?error}`, `${VAR?error}`, `${VAR:+replacement}`, `${VAR+replacement}`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})"
)


class MissingVariable(ValueError):
    """A required variable (`${VAR:?message}`) is unset or empty."""


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text())


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Every string of the document with its variables replaced from `env`."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["bare"] or match["name"]
        op, arg = match["op"], match["arg"] or ""
        present = name in env
        usable = present and env[name] != ""
        defined = usable if op and op.startswith(":") else present
        if op in (":-", "-"):
            return env[name] if defined else arg
        if op in (":?", "?"):
            if not defined:
                raise MissingVariable(f"required variable {name} is missing a value: {arg}")
            return env[name]
        if op in (":+", "+"):
            return arg if defined else ""
        return env.get(name, "")

    return _VARIABLE.sub(replace, value)


def variables(text: str) -> list[tuple[str, str | None, str]]:
    """Every `${...}` reference of a text: (name, operator or None, argument)."""
    return [
        (m["name"] or m["bare"], m["op"], m["arg"] or "")
        for m in _VARIABLE.finditer(text)
        if not m["escaped"]
    ]
