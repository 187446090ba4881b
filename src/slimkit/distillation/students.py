"""Students built from a teacher: fewer transformer layers, narrower CNNs, or any model.

- ``keep_every: k`` / ``keep_layers: [...]``: a copy of the teacher with only some transformer
  layers, initialised from the teacher's weights. ``keep_every: 3`` keeps layers 3 and 6 of a
  6-layer teacher (0-based ``[2, 5]``), the uniform mapping of TinyBERT: the top layer stays,
  because the head was trained on its output.
- ``width: 0.5``: the teacher's architecture rebuilt with that share of its ``width`` (the
  built-in CNNs), freshly initialised: Hinton et al.'s small student.
- ``model: {...}``: any model source, for a student of another family.
- ``current: true``: the incoming model itself, e.g. a pruned network fine-tuned with the
  baseline as its teacher (``teacher: baseline`` in the step).
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

from pydantic import Field, model_validator
from torch import nn

from slimkit.config import Config
from slimkit.errors import StepError
from slimkit.models.arch import Arch, KeptLayers
from slimkit.models.sources import ModelSpec, arch_of, build_model, factory_of
from slimkit.models.surgery import keep_layers, layer_list


class StudentConfig(Config):
    """How to get the student; exactly one of the five ways."""

    keep_every: int | None = Field(None, ge=1)
    keep_layers: tuple[int, ...] | None = None
    width: float | None = Field(None, gt=0.0, lt=1.0)
    model: ModelSpec | None = None
    current: bool = False

    @model_validator(mode="after")
    def _exactly_one(self) -> StudentConfig:
        ways = ("keep_every", "keep_layers", "width", "model", "current")
        given = [k for k in ways if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of {', '.join(ways)} (got {', '.join(given) or 'none'})"
            )
        return self


def build_student(
    teacher: nn.Module, config: StudentConfig, arch: Arch, hints: dict[str, Any]
) -> tuple[nn.Module, Arch]:
    """The student and the ``arch`` record that rebuilds it."""
    if config.current:
        return teacher, arch
    if config.model is not None:
        return build_model(config.model, **hints), arch_of(config.model, hints)
    if config.width is not None:
        return _narrower(config.width, arch)
    path, stack = layer_list(teacher)
    depth = len(stack)
    if config.keep_every is not None:
        keep = list(range(config.keep_every - 1, depth, config.keep_every))
    else:
        keep = list(config.keep_layers or ())
    if not keep:
        raise StepError(f"keep_every: {config.keep_every} keeps none of the {depth} layers.")
    student = copy.deepcopy(teacher)
    keep_layers(student, path, keep)
    previous = arch.layers
    if previous is not None and previous.path == path:  # the teacher was already a student
        keep = [previous.keep[i] for i in keep]
    return student, arch.model_copy(update={"layers": KeptLayers(path=path, keep=tuple(keep))})


def _narrower(share: float, arch: Arch) -> tuple[nn.Module, Arch]:
    factory = factory_of(arch.source)
    params = {} if factory is None else inspect.signature(factory).parameters
    if "width" not in params:
        raise StepError(
            f"width scaling rebuilds the teacher with a smaller width kwarg; {arch.source!r} "
            "takes none. Use keep_every:/keep_layers: for transformers or give a student model:."
        )
    width = arch.kwargs.get("width", params["width"].default)
    kwargs = {**arch.kwargs, "width": max(1, round(width * share))}
    return build_model(ModelSpec(source=arch.source, kwargs=kwargs)), Arch(
        source=arch.source, kwargs=kwargs
    )
