"""The runtime registry and the record a prepared model comes back as."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from slimkit.data.bundle import Inputs
from slimkit.errors import StepError
from slimkit.registry import Registry
from slimkit.state import ModelState

Engine = Callable[[Inputs], torch.Tensor]


@dataclass(frozen=True)
class Prepared:
    """A model ready to serve: its engine, the artifact file that engine loads, the threads it
    runs on where the runtime chose them (else the context's), and notes on what the runtime
    decided for this model and why."""

    engine: Engine
    artifact: Path
    notes: tuple[str, ...] = ()
    threads: int | None = None


@dataclass(frozen=True)
class ServeContext:
    """What a runtime needs besides the model: example inputs, threads, the architecture record,
    and held-out inputs to verify an exported artifact on."""

    input_names: tuple[str, ...]
    sample_inputs: Inputs
    threads: int
    arch: dict[str, Any]
    check_inputs: Inputs | None = None


@dataclass(frozen=True)
class Runtime:
    """How to serve a state: ``prepare(state, artifact_stem, context) -> Prepared``."""

    name: str
    description: str
    prepare: Callable[[ModelState, Path, ServeContext], Prepared]


RUNTIMES: Registry[Runtime] = Registry("runtime")


def param_dtype(module: torch.nn.Module) -> torch.dtype:
    """The floating dtype of ``module``'s parameters (fp32 for a model without any)."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


def in_dtype(inputs: Inputs, dtype: torch.dtype) -> Inputs:
    """Float inputs cast to ``dtype`` (a half-precision model's); token ids left as they are."""
    return tuple(x.to(dtype) if x.is_floating_point() else x for x in inputs)


def prepare(
    state: ModelState,
    artifact_stem: Path,
    *,
    input_names: tuple[str, ...],
    sample_inputs: Inputs,
    threads: int,
    arch: dict[str, Any],
    check_inputs: Inputs | None = None,
) -> Prepared:
    """Serve ``state`` on its runtime, writing its artifact next to ``artifact_stem``."""
    if state.backend not in RUNTIMES:
        raise StepError(RUNTIMES.unknown_message(state.backend))
    context = ServeContext(input_names, sample_inputs, threads, arch, check_inputs)
    return RUNTIMES.get(state.backend).prepare(state, artifact_stem, context)
