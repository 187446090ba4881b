"""Parameter transfer between models whose names or shapes differ.

Tensors are matched by name first; what is left is matched by shape, in order, so a checkpoint
whose layers were renamed (``features.0`` vs ``stem.conv``) still transfers. A tensor whose name
matches but whose shape does not (a 10-class head into a 5-class one) is never matched by shape
to something else: it keeps its fresh initialisation and is reported as mismatched, which is
how a head is replaced for a new number of classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from slimkit.errors import StepError
from slimkit.layers import check_names_exist, select


@dataclass
class TransferReport:
    """What moved where. Names are the target model's unless marked as the source's."""

    by_name: list[str] = field(default_factory=list)
    by_shape: list[tuple[str, str]] = field(default_factory=list)  # (source, target)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # target tensors nothing was loaded into
    unexpected: list[str] = field(default_factory=list)  # source tensors that went nowhere
    skipped: list[str] = field(default_factory=list)  # target tensors excluded by skip

    @property
    def matched(self) -> int:
        return len(self.by_name) + len(self.by_shape)

    def summary(self) -> str:
        parts = [
            f"transferred {self.matched} tensors ({len(self.by_name)} by name, "
            f"{len(self.by_shape)} by shape)"
        ]
        if self.mismatched:
            shown = ", ".join(f"{n} {s} vs {t}" for n, s, t in self.mismatched[:3])
            parts.append(f"{len(self.mismatched)} kept initialised, shapes differ: {shown}")
        if self.missing:
            parts.append(f"{len(self.missing)} missing from the checkpoint")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} checkpoint tensors unused")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "matched": self.matched,
            "by_name": self.by_name,
            "by_shape": [{"source": s, "target": t} for s, t in self.by_shape],
            "mismatched": [
                {"name": n, "checkpoint": list(s), "model": list(t)} for n, s, t in self.mismatched
            ],
            "missing": self.missing,
            "unexpected": self.unexpected,
            "skipped": self.skipped,
        }


def match_tensors(
    source: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    by_shape: bool = True,
    skipped: frozenset[str] = frozenset(),
) -> tuple[dict[str, str], TransferReport]:
    """``{target name: source name}`` and the report of how each tensor fared.

    >>> a, b = torch.zeros(2, 3), torch.zeros(4)
    >>> mapping, report = match_tensors({"x.w": a, "x.b": b}, {"y.w": a, "y.b": b})
    >>> mapping, report.by_shape
    ({'y.w': 'x.w', 'y.b': 'x.b'}, [('x.w', 'y.w'), ('x.b', 'y.b')])
    """
    report = TransferReport(skipped=[n for n in target if n in skipped])
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    blocked: set[str] = set()
    for name, tensor in target.items():
        if name in skipped or name not in source:
            continue
        if source[name].shape == tensor.shape:
            mapping[name] = name
            report.by_name.append(name)
            taken.add(name)
        else:
            report.mismatched.append((name, tuple(source[name].shape), tuple(tensor.shape)))
            blocked.add(name)
    if by_shape:
        rest = [n for n in source if n not in taken and n not in blocked]
        cursor = 0
        for name, tensor in target.items():
            if name in mapping or name in blocked or name in skipped:
                continue
            for i in range(cursor, len(rest)):
                if source[rest[i]].shape == tensor.shape:
                    mapping[name] = rest[i]
                    report.by_shape.append((rest[i], name))
                    taken.add(rest[i])
                    cursor = i + 1  # keep the order: layers stay in sequence
                    break
    report.missing = [
        n for n in target if n not in mapping and n not in blocked and n not in skipped
    ]
    report.unexpected = [n for n in source if n not in taken and n not in blocked]
    return mapping, report


def transfer_weights(
    model: nn.Module,
    source: dict[str, torch.Tensor],
    by_shape: bool = True,
    skip: tuple[str, ...] = (),
    origin: str = "the checkpoint",
) -> TransferReport:
    """Copy the tensors of ``source`` that fit into ``model`` (in place); return the report.

    ``skip`` names layers (type names, exact names, ``re:`` patterns) that keep their weights,
    e.g. the head. Fails when nothing at all matches: the wrong checkpoint, not a partial one.
    """
    check_names_exist(model, skip, "skip")
    own = model.state_dict()
    skipped = frozenset(
        f"{layer}.{t}" if layer else t
        for layer, module in select(model, list(skip))
        for t in module.state_dict()
    )
    mapping, report = match_tensors(source, own, by_shape, skipped)
    if not mapping:
        raise StepError(
            f"{origin} shares no tensor with the model: none of its {len(source)} tensors "
            "matches a name or a shape of the model's. Check that it is a checkpoint of a "
            "related network."
        )
    with torch.no_grad():
        for target_name, source_name in mapping.items():
            own[target_name].copy_(source[source_name].to(own[target_name].dtype))
    return report
