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
    arch: dict[str, Any] | None = None  # how to rebuild the incoming model (its architecture)
    baseline: nn.Module | None = None  # the run's baseline, e.g. a teacher; never modify it
    # where a training step keeps its epoch checkpoint, so an interrupted run resumes mid-step
    checkpoint_dir: Path | None = None


Apply = Callable[[ModelState, Any, StepContext], ModelState]


@dataclass(frozen=True)
class StepType:
    """A kind of step. A ``final`` step leaves a model that no later step can change."""

    name: str
    parse: Callable[[dict[str, Any], str], Config]
    apply: Apply
    description: str
    final: bool = False


STEPS: Registry[StepType] = Registry("step type")


def register_step(
    name: str, parse: Callable[[dict[str, Any], str], Config], *, final: bool = False
) -> Callable[[Apply], Apply]:
    """Register ``apply(state, config, context) -> state`` as step type ``name``."""

    def decorator(apply: Apply) -> Apply:
        doc = (apply.__doc__ or "").strip().splitlines()
        STEPS.add(name, StepType(name, parse, apply, doc[0] if doc else "", final))
        return apply

    return decorator
