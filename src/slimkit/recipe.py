"""Recipes: a baseline and an ordered list of steps, as inert data.

A recipe is plain YAML (``yaml.safe_load``: no tags, nothing evaluated). Every mapping is
checked against its typed config, so an unknown key or a wrong type is an error that names the
key and what is allowed. Steps are written ``- kind: {config}``, optionally with ``name:``::

    name: demo
    model: resnet-mini
    data: mnist5k
    baseline:
      train: {epochs: 20, lr: 0.006, augment: [random-shift]}
    steps:
      - prune: {method: channels, ratio: 0.5}
      - finetune: {epochs: 6, lr: 0.002}
      - quantize: {mode: static-int8}
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator, model_validator

from slimkit._yaml import YamlError, load_yaml
from slimkit.config import Config
from slimkit.data.sources import DataSpec
from slimkit.errors import RecipeError, quote
from slimkit.evaluation.metrics import METRICS
from slimkit.models.sources import ModelSpec
from slimkit.runtimes import RUNTIMES
from slimkit.steps import STEPS
from slimkit.training.config import TrainConfig


class BaselineConfig(Config):
    """How to get the baseline: train it (``train:``), or use the loaded weights as they are."""

    train: TrainConfig | None = None
    cache: bool = Field(True, description="Reuse a baseline trained with the same config.")


class EvaluationConfig(Config):
    """How every step is measured. The same settings apply to the baseline and every step."""

    runtime: str | None = Field(
        None,
        description="The runtime the baseline (and steps that keep a PyTorch model) serve on. "
        "Default: eager for a PyTorch model, onnxruntime for an ONNX graph.",
    )
    baseline_runtimes: tuple[str, ...] = Field(
        (),
        description="Also serve the baseline on these runtimes, timed with the rest; the summary "
        "compares the final model with the baseline on the fastest.",
    )
    batch_size: int = Field(1, ge=1, le=65_536)
    threads: int | None = Field(None, ge=1, le=1024, description="Default: torch's thread count.")
    warmup: int = Field(10, ge=0, le=100_000)
    rounds: int = Field(20, ge=1, le=100_000)
    per_round: int = Field(10, ge=1, le=100_000)
    metrics: tuple[str, ...] = ("accuracy",)

    @model_validator(mode="before")
    @classmethod
    def _old_name(cls, data: Any) -> Any:
        """Older recipes called the runtime ``backend``: they still load."""
        if isinstance(data, dict) and "backend" in data and "runtime" not in data:
            data = {("runtime" if k == "backend" else k): v for k, v in data.items()}
        return data

    @field_validator("runtime", "baseline_runtimes")
    @classmethod
    def _known_runtimes(cls, v: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
        for name in (v,) if isinstance(v, str) else v or ():
            if name not in RUNTIMES:
                raise ValueError(RUNTIMES.unknown_message(name))
        return tuple(dict.fromkeys(v)) if isinstance(v, tuple) else v

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for m in v:
            if m not in METRICS:
                raise ValueError(METRICS.unknown_message(m))
        return v


class _Head(Config):
    """The recipe's top level, steps still raw (they are parsed through the step registry)."""

    name: str = Field("run", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    seed: int = 0
    model: ModelSpec
    data: DataSpec
    baseline: BaselineConfig = BaselineConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    steps: list[Any] = Field(default_factory=list)

    @field_validator("model", "data", mode="before")
    @classmethod
    def _short_form(cls, v: Any) -> Any:
        return {"source": v} if isinstance(v, str) else v


@dataclass(frozen=True)
class StepSpec:
    """One step of a recipe: its type, its unique name in the run, its validated config."""

    kind: str
    name: str
    config: Config

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, self.kind: self.config.to_dict()}


@dataclass(frozen=True)
class Recipe:
    """A validated recipe. Build with :meth:`from_dict` or :meth:`load`."""

    name: str
    seed: int
    model: ModelSpec
    data: DataSpec
    baseline: BaselineConfig
    evaluation: EvaluationConfig
    steps: tuple[StepSpec, ...]

    @classmethod
    def from_dict(cls, data: Any, where: str = "recipe") -> Recipe:
        if not isinstance(data, dict):
            raise RecipeError(
                f"A recipe must be a mapping of keys to values, got {type(data).__name__}."
            )
        head = _Head.from_dict(data, where)
        if not isinstance(head.steps, list):
            raise RecipeError(f"'{where}.steps' must be a list of steps.")
        steps = _parse_steps(head.steps, where)
        return cls(
            head.name, head.seed, head.model, head.data, head.baseline, head.evaluation, steps
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Recipe:
        """Read and validate a YAML recipe file."""
        p = Path(path)
        if not p.is_file():
            raise RecipeError(f"Recipe file {str(p)!r} does not exist.")
        try:
            data = load_yaml(p)
        except YamlError as err:
            raise RecipeError(f"Recipe {p} {err}.") from None
        return cls.from_dict(data, where=p.name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seed": self.seed,
            "model": self.model.to_dict(),
            "data": self.data.to_dict(),
            "baseline": self.baseline.to_dict(),
            "evaluation": self.evaluation.to_dict(),
            "steps": [s.to_dict() for s in self.steps],
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def with_steps(self, steps: list[StepSpec], name: str | None = None) -> Recipe:
        """This recipe's model, data, baseline and evaluation with ``steps`` instead (renamed
        where two share a name, and checked like a recipe's own)."""
        raw = {**self.to_dict(), "steps": [s.to_dict() for s in steps]}
        return Recipe.from_dict({**raw, "name": name or self.name})


def step(kind: str, config: dict[str, Any], where: str = "step") -> StepSpec:
    """One step of type ``kind``, its mapping validated now (named after its type until a
    recipe holds it)."""
    if kind not in STEPS:
        raise RecipeError(f"'{where}': " + STEPS.unknown_message(kind))
    return StepSpec(kind, kind, STEPS.get(kind).parse(config, f"{where}.{kind}"))


def _parse_steps(raw: list[Any], where: str) -> tuple[StepSpec, ...]:
    steps: list[StepSpec] = []
    final_step: str | None = None
    for i, item in enumerate(raw):
        at = f"{where}.steps[{i}]"
        if not isinstance(item, dict):
            raise RecipeError(
                f"'{at}' must be a mapping like {{prune: {{...}}}}, got {quote(item)}."
            )
        item = dict(item)
        name = item.pop("name", None)
        if len(item) != 1:
            raise RecipeError(
                f"'{at}' must name exactly one step type (and optionally name:), got keys "
                f"{quote(sorted(map(str, item)))}. Step types: {', '.join(STEPS.list())}."
            )
        kind, body = next(iter(item.items()))
        if kind not in STEPS:
            raise RecipeError(f"'{at}': " + STEPS.unknown_message(str(kind)))
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise RecipeError(f"'{at}.{kind}' must be a mapping of settings, got {quote(body)}.")
        step_type = STEPS.get(kind)
        if final_step is not None:
            raise RecipeError(
                f"'{at}' ({kind}) comes after {final_step}, whose quantized model cannot be "
                "changed further. Put quantize last."
            )
        config = step_type.parse(body, f"{at}.{kind}")
        steps.append(StepSpec(kind, _unique_name(name or kind, steps, at), config))
        if step_type.final:
            final_step = f"steps[{i}] ({kind})"
    return tuple(steps)


def _unique_name(name: Any, steps: list[StepSpec], at: str) -> str:
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise RecipeError(f"'{at}.name' must be letters, digits, '-' or '_', got {quote(name)}.")
    taken = {s.name for s in steps} | {"baseline"}
    if name not in taken:
        return name
    n = 2
    while f"{name}-{n}" in taken:
        n += 1
    return f"{name}-{n}"


def with_opt_ins(recipe: Recipe, trust_checkpoint: bool, trust_remote_code: bool) -> Recipe:
    """``recipe`` with every ``trust_checkpoint`` / ``trust_remote_code`` it sets, anywhere,
    replaced by the given values: opt-ins are the user's, never a file's."""
    given = {"trust_checkpoint": trust_checkpoint, "trust_remote_code": trust_remote_code}
    return Recipe.from_dict(_set_opt_ins(recipe.to_dict(), given))


def steps_opt_in(recipe: Recipe) -> bool:
    """Whether any step of ``recipe`` sets an opt-in to running code."""
    steps = [s.to_dict() for s in recipe.steps]
    return steps != _set_opt_ins(steps, {"trust_checkpoint": False, "trust_remote_code": False})


def _set_opt_ins(value: Any, given: dict[str, bool]) -> Any:
    """``value`` (plain data) with every opt-in key, at any depth, set as ``given`` says."""
    if isinstance(value, dict):
        return {k: given[k] if k in given else _set_opt_ins(v, given) for k, v in value.items()}
    if isinstance(value, list):
        return [_set_opt_ins(v, given) for v in value]
    return value
