"""Typed, frozen configuration objects and the one place their validation errors are worded.

Every config in slimkit derives from :class:`Config`: a frozen pydantic model that rejects
unknown keys, so a typo in a recipe is an error that names the key, never a silently ignored
option. ``to_dict`` / ``from_dict`` give the round trip that recipes and ``results.json`` use.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from slimkit.errors import RecipeError, quote


class Config(BaseModel):
    """Base of all configs: frozen, strict about unknown keys, validated on construction."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (enums as their values) that :meth:`from_dict` reads back."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "") -> Self:
        """Validate ``data``; errors become one :class:`RecipeError` naming each bad key."""
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise RecipeError(describe_validation_error(err, cls, where)) from None


def gather_keys(data: Any, into: dict[str, type[BaseModel]]) -> Any:
    """The short form of a composed config: keys of a nested config written at the top level
    (``finetune: {epochs: 3}``) move under the field that holds it (``{train: {epochs: 3}}``).

    For a ``mode="before"`` validator. A key given both ways is an error, never a silent choice.
    """
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for field, model in into.items():
        moved = {k: data.pop(k) for k in list(data) if k in model.model_fields}
        if not moved:
            continue
        inner = data.get(field) or {}
        if not isinstance(inner, dict):
            raise ValueError(f"{field} must be a mapping of settings")
        if both := sorted(set(moved) & set(inner)):
            raise ValueError(f"{both[0]} is given both at the top level and under {field}")
        data[field] = {**inner, **moved}
    return data


def describe_validation_error(err: ValidationError, model: type[BaseModel], where: str) -> str:
    """Turn pydantic's error list into sentences that name the key and the allowed values."""
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        path = ".".join(p for p in (where, loc) if p) or model.__name__
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, e["loc"][:-1])
            problems.append(
                f"unknown key '{path}'"
                + (f"; allowed keys here: {', '.join(allowed)}" if allowed else "")
            )
        elif e["type"] == "missing":
            problems.append(f"missing required key '{path}'")
        else:
            got = e.get("input")
            shown = f" (got {quote(got)})" if got is not None and not isinstance(got, dict) else ""
            problems.append(f"'{path}': {e['msg']}{shown}")
    return "Invalid configuration: " + "; ".join(problems) + "."


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return []
        current = _model_type(fields[part].annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else []


def _model_type(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_type(arg)
        if found is not None:
            return found
    return None
