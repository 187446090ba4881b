"""The ``distill`` pipeline step: the current model teaches a student built from it."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator
from torch import nn

from slimkit.config import Config, gather_keys
from slimkit.distillation.configs import DistillConfig, StudentConfig
from slimkit.distillation.students import build_student
from slimkit.distillation.task import distill
from slimkit.errors import StepError
from slimkit.models.resolution import check_resizable, input_size, resize_inputs, scaled_size
from slimkit.state import ModelState
from slimkit.steps import StepContext, register_step
from slimkit.training.config import TrainConfig
from slimkit.training.step import describe


class Teacher(StrEnum):
    CURRENT = "current"  # the incoming model teaches a student built from it
    BASELINE = "baseline"  # the run's baseline teaches (e.g. a pruned model: student current)


class DistillStepConfig(Config):
    """The student to build, who teaches it, what it learns (``distill``) and how it trains
    (``train``); the keys of those two may also be written at the top level of the step."""

    student: StudentConfig = Field(
        description="One of keep_every, keep_layers, width, depth, model, current."
    )
    teacher: Teacher = Field(Teacher.CURRENT, description="current, or the run's baseline.")
    resolution: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="Share of each image side the student sees, resized inside it.",
    )
    distill: DistillConfig = Field(DistillConfig(), description="What the student learns.")
    train: TrainConfig = Field(TrainConfig(), description="How the student trains.")

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return gather_keys(data, {"distill": DistillConfig, "train": TrainConfig})


def _parse(data: dict[str, Any], where: str) -> DistillStepConfig:
    return DistillStepConfig.from_dict(data, where)


@register_step("distill", _parse, config=DistillStepConfig)
def distill_step(state: ModelState, config: DistillStepConfig, ctx: StepContext) -> ModelState:
    """Distil the current model into a smaller student (soft targets, hints, attention)."""
    if ctx.arch is None:
        raise StepError("distill needs the teacher's architecture record to build a student.")
    hints = {"num_classes": ctx.data.num_classes}
    if ctx.data.in_channels is not None:
        hints["in_channels"] = ctx.data.in_channels
    teacher = state.module
    if config.teacher is Teacher.BASELINE:
        if ctx.baseline is None:
            raise StepError("teacher: baseline needs the run's baseline model; none was given.")
        teacher = ctx.baseline
    student, arch = build_student(state.module, config.student, ctx.arch, hints)
    if student is teacher:
        raise StepError(
            "The student is the teacher (student: {current: true} with teacher: current). "
            "Use teacher: baseline to fine-tune the current model from the baseline."
        )
    seen = ""
    if config.resolution is not None:
        size = _lower_resolution(student, config.resolution, ctx)
        arch = arch.model_copy(update={"resolution": size})
        seen = f"sees {size[0]}x{size[1]} images; "
    history = distill(
        teacher, student, ctx.data, config.distill, config.train, ctx.progress, ctx.checkpoint_dir
    )
    teacher_params = sum(p.numel() for p in teacher.parameters())
    student_params = sum(p.numel() for p in student.parameters())
    note = (
        f"student with {student_params / teacher_params:.0%} of the teacher's parameters; "
        f"{seen}T={config.distill.temperature:g}, alpha={config.distill.alpha:g}; "
        + describe(history, "distilled", config.train)
    )
    return ModelState(student, state.runtime, notes=[note], arch=arch)


def _lower_resolution(student: nn.Module, scale: float, ctx: StepContext) -> tuple[int, int]:
    """Make ``student`` resize its images to ``scale`` of each side (of the size it already
    resizes to, else of the data's) before it trains; the size."""
    given = ctx.data.image_size
    if given is None:
        raise StepError(
            "resolution: scales images, and this data has none (inputs of shape N, C, H, W). "
            "Drop resolution: from the distill step."
        )
    size = scaled_size(input_size(student) or given, scale)
    resize_inputs(student, size)
    check_resizable(student, ctx.data.sample_inputs(1)[0])
    return size
