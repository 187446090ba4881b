"""Students built from a teacher, one builder per :data:`StudentConfig` type.

- ``keep_every: k`` / ``keep_layers: [...]``: a copy of the teacher with only some transformer
  layers, initialised from the teacher's weights. ``keep_every: 3`` keeps layers 3 and 6 of a
  6-layer teacher (0-based ``[2, 5]``), the uniform mapping of TinyBERT: the top layer stays,
  because the head was trained on its output.
- ``width: 0.5``: the teacher's architecture rebuilt with that share of its ``width`` (the
  built-in CNNs), freshly initialised: Hinton et al.'s small student.
- ``depth: 0.5``: a copy of the teacher with half of each stage's residual blocks (rounded up),
  the rest of its weights kept: EfficientNet's depth multiplier, applied to a trained network.
- ``model: {...}``: any model source, for a student of another family.
- ``current: true``: the incoming model itself, e.g. a pruned network fine-tuned with the
  baseline as its teacher (``teacher: baseline`` in the step).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from slimkit.distillation.configs import (
    CurrentStudent,
    KeepEveryStudent,
    KeepLayersStudent,
    ModelStudent,
    NarrowerStudent,
    ShallowerStudent,
    StudentConfig,
)
from slimkit.errors import StepError
from slimkit.models.arch import Arch, KeptLayers
from slimkit.models.blocks import drop_blocks, shallower
from slimkit.models.sources import ModelSpec, arch_of, build_model, factory_of
from slimkit.models.surgery import keep_layers, layer_list

Built = tuple[nn.Module, Arch]
_BUILDERS: dict[type, Callable[[Any, nn.Module, Arch, dict[str, Any]], Built]] = {}


def _builds(kind: type) -> Callable[[Callable[..., Built]], Callable[..., Built]]:
    def decorator(fn: Callable[..., Built]) -> Callable[..., Built]:
        _BUILDERS[kind] = fn
        return fn

    return decorator


def build_student(
    teacher: nn.Module, config: StudentConfig, arch: Arch, hints: dict[str, Any]
) -> Built:
    """The student ``config`` describes, built from ``teacher`` (whose ``arch`` record says how
    to rebuild it), and the ``arch`` record that rebuilds the student."""
    return _BUILDERS[type(config)](config, teacher, arch, hints)


@_builds(CurrentStudent)
def _current(config: CurrentStudent, teacher: nn.Module, arch: Arch, hints: Any) -> Built:
    return teacher, arch


@_builds(ModelStudent)
def _other(config: ModelStudent, teacher: nn.Module, arch: Arch, hints: dict[str, Any]) -> Built:
    return build_model(config.model, **hints), arch_of(config.model, hints)


@_builds(KeepEveryStudent)
def _every(config: KeepEveryStudent, teacher: nn.Module, arch: Arch, hints: Any) -> Built:
    depth = len(layer_list(teacher)[1])
    keep = list(range(config.keep_every - 1, depth, config.keep_every))
    if not keep:
        raise StepError(f"keep_every: {config.keep_every} keeps none of the {depth} layers.")
    return _keep(teacher, arch, keep)


@_builds(KeepLayersStudent)
def _layers(config: KeepLayersStudent, teacher: nn.Module, arch: Arch, hints: Any) -> Built:
    return _keep(teacher, arch, list(config.keep_layers))


def _keep(teacher: nn.Module, arch: Arch, keep: list[int]) -> Built:
    path, _ = layer_list(teacher)
    student = copy.deepcopy(teacher)
    keep_layers(student, path, keep)
    previous = arch.layers
    if previous is not None and previous.path == path:  # the teacher was already a student
        keep = [previous.keep[i] for i in keep]
    return student, arch.model_copy(update={"layers": KeptLayers(path=path, keep=tuple(keep))})


@_builds(NarrowerStudent)
def _narrower(config: NarrowerStudent, teacher: nn.Module, arch: Arch, hints: Any) -> Built:
    factory = factory_of(arch.source)
    params = {} if factory is None else inspect.signature(factory).parameters
    if "width" not in params:
        raise StepError(
            f"width scaling rebuilds the teacher with a smaller width kwarg; {arch.source!r} "
            "takes none. Use keep_every:/keep_layers: for transformers or give a student model:."
        )
    width = arch.kwargs.get("width", params["width"].default)
    kwargs = {**arch.kwargs, "width": max(1, round(width * config.width))}
    return build_model(ModelSpec(source=arch.source, kwargs=kwargs)), Arch(
        source=arch.source, kwargs=kwargs
    )


@_builds(ShallowerStudent)
def _shallower(config: ShallowerStudent, teacher: nn.Module, arch: Arch, hints: Any) -> Built:
    student = copy.deepcopy(teacher)
    dropped = shallower(student, config.depth)
    if not dropped:
        raise StepError(
            f"depth: {config.depth:g} drops no block of {type(teacher).__name__}: it has no "
            "stage of residual blocks (blocks that add their input to their output) with a "
            "block to spare at that depth. Lower depth:, or build the student by width: or "
            "model: (transformers: keep_every: or keep_layers:)."
        )
    drop_blocks(student, dropped)
    return student, arch.model_copy(update={"dropped": (*(arch.dropped or ()), *dropped)})
