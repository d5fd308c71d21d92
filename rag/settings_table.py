"""The README's settings table, made from the settings' own groups and descriptions:

    .venv/bin/python -m rag.settings_table

prints it; tests/test_config.py fails when the README's copy differs, so a setting cannot go undocumented."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import AliasChoices
from pydantic.fields import FieldInfo

from rag.config import Settings

BEGIN = "<!-- settings table: python -m rag.settings_table -->"
END = "<!-- end of settings table -->"


def env_name(name: str, field: FieldInfo) -> str:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return f"RAG_{name.upper()}"


def shown_default(name: str, field: FieldInfo) -> str:
    home_relative = {"data_dir": "`~/.local/share/rag`", "model_cache": "`~/.cache/rag/models`"}
    if name in home_relative:  # the machine's home is not the reader's
        return home_relative[name]
    value: Any = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str | list):
        return f"`{value}`" if value != [] else "`[]`"
    return f"{value:g}" if isinstance(value, float) else str(value)


def group_of(field: FieldInfo) -> str:
    extra = field.json_schema_extra
    return str(extra.get("group", "")) if isinstance(extra, dict) else ""


def table() -> str:
    """One section per group, in the order the settings are declared."""
    groups: dict[str, list[str]] = {}
    for name, field in Settings.model_fields.items():
        row = f"| `{env_name(name, field)}` | {shown_default(name, field)} | {field.description} |"
        groups.setdefault(group_of(field), []).append(row)
    parts = [BEGIN]
    for group, rows in groups.items():
        parts += [
            "",
            f"**{group}**",
            "",
            "| variable | default | what it does |",
            "| --- | --- | --- |",
            *rows,
        ]
    return "\n".join([*parts, "", END])


if __name__ == "__main__":
    print(table())
