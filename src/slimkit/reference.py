"""Every step's keys, read from the configs themselves, so the reference cannot drift.

``slimkit list steps --keys`` prints it and the README embeds it (a test keeps the two equal).
"""

from __future__ import annotations

import enum
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from slimkit.steps import STEPS


@dataclass(frozen=True)
class Key:
    """One key of a step's mapping: its name, accepted values, default and meaning."""

    name: str
    type: str
    default: str
    help: str


def keys_of(config: type[BaseModel], skip: str | None = None) -> list[Key]:
    """The keys ``config`` accepts (``skip``: the key that chose it, e.g. ``method``)."""
    keys = []
    for name, field in config.model_fields.items():
        if name == skip:
            continue
        if field.default_factory is not None:
            default: Any = field.default_factory()  # type: ignore[call-arg]
        else:
            default = field.default
        shown = "required" if default is PydanticUndefined else _value(default)
        keys.append(Key(name, _type(field.annotation), shown, field.description or ""))
    return keys


def sections() -> list[tuple[str, str, list[Key]]]:
    """``(title, description, keys)`` for each step type, each method/mode of one, then each
    mapping nested in them (training settings, students, ...), by its type's name."""
    found = []
    nested: dict[str, type[BaseModel]] = {}
    for name in STEPS:
        step = STEPS.get(name)
        for value, config in step.configs.types().items():
            key = step.configs.key
            title = f"{name}: {{{key}: {value}}}" if key else name
            found.append((title, _summary(config, step.description), keys_of(config, key)))
            nested.update(_nested(config))
    for type_name, inner in sorted(nested.items()):
        found.append((type_name, _summary(inner, ""), keys_of(inner)))
    return found


def _summary(config: type[BaseModel], fallback: str) -> str:
    """The first paragraph of the config's docstring, on one line."""
    doc = (config.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(doc.split()) or fallback


def _nested(config: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Config types that ``config``'s fields hold, at any depth."""
    found: dict[str, type[BaseModel]] = {}
    stack: list[Any] = [f.annotation for f in config.model_fields.values()]
    while stack:
        annotation = stack.pop()
        stack.extend(typing.get_args(annotation))
        if not isinstance(annotation, type) or not issubclass(annotation, BaseModel):
            continue
        if annotation.__name__ not in found:
            found[annotation.__name__] = annotation
            stack.extend(f.annotation for f in annotation.model_fields.values())
    return found


def markdown() -> str:
    """The reference as Markdown: a table of keys per step (and per method or mode)."""
    lines: list[str] = []
    for title, description, keys in sections():
        lines += [f"#### `{title}`", "", description, ""]
        if not keys:
            lines += ["No keys.", ""]
            continue
        lines += ["| key | values | default | meaning |", "|---|---|---|---|"]
        for k in keys:
            lines.append(f"| `{k.name}` | {_cell(k.type)} | {_cell(k.default)} | {_cell(k.help)} |")
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|") if text else ""


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:  # a tagged union's members, or a constrained type
        return _type(typing.get_args(annotation)[0])
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        optional = len(args) < len(typing.get_args(annotation))
        return " or ".join(_type(a) for a in args) + (" or null" if optional else "")
    if origin is typing.Literal:
        return " or ".join(str(a) for a in typing.get_args(annotation))
    if origin in (tuple, list):
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {_type(args[0])} to {_type(args[1])}" if len(args) == 2 else "mapping"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " or ".join(str(m.value) for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"mapping: {annotation.__name__}"
    return getattr(annotation, "__name__", str(annotation))


def _value(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, BaseModel):
        return "defaults"
    if value is None:
        return "null"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if not isinstance(value, dict) or value else "{}"
