"""Intermediate-layer distillation: hints (FitNets, Romero et al. 2015) and attention transfer.

- A **hint** pairs a teacher layer with a student layer. The student's output goes through a
  learned projection (a 1x1 convolution for feature maps, a Linear otherwise) to the teacher's
  width, and the loss is the mean squared error to the teacher's output.
- **Attention transfer** for transformers pairs a teacher layer with a student layer and
  minimises the KL divergence between their attention distributions (as in MiniLM, Wang et al.
  2020), averaged over heads and the non-padding query positions.

Both read layer outputs through forward hooks, so neither model needs changing.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.distillation.configs import AttentionPair, HintPair
from slimkit.errors import StepError
from slimkit.models.families import find_family
from slimkit.models.surgery import layer_list


def _module(model: nn.Module, name: str, role: str) -> nn.Module:
    names = [n for n, _ in model.named_modules() if n]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise StepError(f"The {role} has no layer {name!r} to distil through.{hint}")
    return model.get_submodule(name)


class Capture:
    """The latest output of each hooked module, keyed by an index."""

    def __init__(self) -> None:
        self.outputs: dict[int, torch.Tensor] = {}
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []

    def hook(self, module: nn.Module, key: int, pick: Callable[[Any], torch.Tensor]) -> None:
        def store(_m: nn.Module, _args: object, out: object) -> None:
            self.outputs[key] = pick(out)

        self._hooks.append(module.register_forward_hook(store))

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()


def _first(out: Any) -> torch.Tensor:
    first: torch.Tensor = out[0] if isinstance(out, tuple | list) else out
    return first


def _second(out: Any) -> torch.Tensor:
    if not isinstance(out, tuple | list) or len(out) < 2 or out[1] is None:
        raise StepError(
            "The attention layer returned no attention probabilities; attention transfer needs "
            "the eager attention implementation."
        )
    second: torch.Tensor = out[1]
    return second


def projection(student_out: torch.Tensor, teacher_out: torch.Tensor) -> nn.Module:
    """The learned map from a student feature to the teacher's width."""
    if student_out.dim() == 4:
        return nn.Conv2d(student_out.shape[1], teacher_out.shape[1], 1, bias=False)
    return nn.Linear(student_out.shape[-1], teacher_out.shape[-1], bias=False)


def hint_loss(
    student_out: torch.Tensor, teacher_out: torch.Tensor, proj: nn.Module
) -> torch.Tensor:
    """MSE between the projected student feature and the teacher's (spatially pooled to fit)."""
    s = proj(student_out)
    if s.dim() == 4 and s.shape[-2:] != teacher_out.shape[-2:]:
        s = F.adaptive_avg_pool2d(s, (teacher_out.shape[-2], teacher_out.shape[-1]))
    return F.mse_loss(s, teacher_out)


def attention_kl(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """``KL(teacher ‖ student)`` of attention rows (B, H, Lq, Lk), over heads and real queries.

    Different head counts are compared through their head-averaged maps.

    >>> p = torch.full((1, 1, 2, 2), 0.5)
    >>> float(attention_kl(p, p, None))
    0.0
    """
    if student.shape[1] != teacher.shape[1]:
        student, teacher = student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
    kl = (teacher * (teacher.clamp_min(1e-12).log() - student.clamp_min(1e-12).log())).sum(-1)
    if mask is None:
        return kl.mean()
    weights = mask[:, None, :].to(kl.dtype).expand_as(kl)
    return (kl * weights).sum() / weights.sum().clamp_min(1.0)


def _attention_module(model: nn.Module, index: int, role: str) -> nn.Module:
    """Layer ``index``'s attention module: where its family keeps it, else the module named
    like ``*SelfAttention`` in the layer (a user's own transformer)."""
    _, stack = layer_list(model)
    if index >= len(stack):
        raise StepError(
            f"The {role} has {len(stack)} transformer layers; there is no layer {index}."
        )
    found = find_family(model, strict=False)
    if found is not None:
        return stack[index].get_submodule(found.family.attention.module)
    for module in stack[index].modules():
        if type(module).__name__.endswith("SelfAttention"):
            return module
    raise StepError(f"Layer {index} of the {role} has no self-attention module to read maps from.")


def use_eager_attention(model: nn.Module) -> Callable[[], None]:
    """Switch Hugging Face submodules to eager attention that returns its probabilities (some
    families return them only when asked, by ``output_attentions``); return the function that
    switches them back."""
    restore: list[tuple[Any, Any, str, bool]] = []
    for module in model.modules():
        config = getattr(module, "config", None)
        setter: Any = getattr(module, "set_attn_implementation", None)
        if setter is not None and config is not None:
            restore.append((setter, config, config._attn_implementation, config.output_attentions))
            setter("eager")
            config.output_attentions = True

    def undo() -> None:
        for setter, config, implementation, asked in restore:
            setter(implementation)
            config.output_attentions = asked

    return undo


def hook_pairs(
    teacher: nn.Module,
    student: nn.Module,
    hints: tuple[HintPair, ...],
    attention: tuple[AttentionPair, ...],
) -> tuple[Capture, Capture]:
    """Hooks that capture each hint and attention pair's outputs (keys: hints, then attention)."""
    t_cap, s_cap = Capture(), Capture()
    for i, pair in enumerate(hints):
        t_cap.hook(_module(teacher, pair.teacher, "teacher"), i, _first)
        s_cap.hook(_module(student, pair.student, "student"), i, _first)
    for j, a in enumerate(attention, start=len(hints)):
        t_cap.hook(_attention_module(teacher, a.teacher, "teacher"), j, _second)
        s_cap.hook(_attention_module(student, a.student, "student"), j, _second)
    return t_cap, s_cap
