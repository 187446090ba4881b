"""Pipeline step types: a name, how to read its config, and how to apply it to a model.

A step type is registered where its technique lives (``pruning/step.py``, ...), with
``@register_step``; recipes name steps by these names and ``slimkit list steps`` shows them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.config import Config
from slimkit.data.bundle import DataBundle
from slimkit.models.arch import Arch
from slimkit.progress import Progress
from slimkit.registry import Registry
from slimkit.state import ModelState


@dataclass(frozen=True)
class StepContext:
    """What a step may use besides the model: the data, where to write, how to report."""

    data: DataBundle
    artifact_stem: Path  # run_dir/artifacts/NN-name; a step adds the suffix it writes
    progress: Progress
    seed: int
    batch_size: int  # the batch size models are timed at (evaluation.batch_size)
    arch: Arch | None = None  # how to rebuild the incoming model (its architecture)
    baseline: nn.Module | None = None  # the run's baseline, e.g. a teacher; never modify it
    # where a training step keeps its epoch checkpoint, so an interrupted run resumes mid-step
    checkpoint_dir: Path | None = None


Apply = Callable[[ModelState, Any, StepContext], ModelState]


@dataclass(frozen=True)
class StepType:
    """A kind of step. A ``final`` step leaves a model that no later step can change;
    ``takes_graph``: it applies to a model that is only an ONNX graph (no PyTorch weights).

    ``configs`` names the config types its mapping may hold: one, or one per value of a key
    (``prune``'s ``method``, ``quantize``'s ``mode``); the reference of every key reads it.
    """

    name: str
    parse: Callable[[dict[str, Any], str], Config]
    apply: Apply
    description: str
    configs: Variants
    final: bool = False
    takes_graph: bool = False


@dataclass(frozen=True)
class Variants:
    """A step's config types: ``types`` by the value of ``key`` (``key`` None: one type)."""

    key: str | None
    types: Callable[[], dict[str, type[Config]]]


STEPS: Registry[StepType] = Registry("step type")


def register_step(
    name: str,
    parse: Callable[[dict[str, Any], str], Config],
    *,
    config: type[Config] | Variants,
    final: bool = False,
    takes_graph: bool = False,
) -> Callable[[Apply], Apply]:
    """Register ``apply(state, config, context) -> state`` as step type ``name``, whose
    mapping ``parse`` validates into ``config`` (a type, or :class:`Variants` by a key).
    ``takes_graph``: the step also applies to an ONNX graph (other steps refuse one by name)."""
    configs = config if isinstance(config, Variants) else Variants(None, lambda: {"": config})

    def decorator(apply: Apply) -> Apply:
        doc = (apply.__doc__ or "").strip().splitlines()
        about = doc[0] if doc else ""
        STEPS.add(name, StepType(name, parse, apply, about, configs, final, takes_graph))
        return apply

    return decorator
