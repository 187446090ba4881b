"""What ``slimkit auto`` optimises and how it reports: its config, result and constants."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from slimkit.config import Config

STUDY = "slimkit-auto"
FINALISTS = 3  # trials within budget re-timed side by side before one is chosen
REUSED_STEPS = 8  # applied steps kept in memory for later trials that begin alike


class Objective(StrEnum):
    LATENCY = "latency"  # p50 on the serving runtime, at the recipe's evaluation batch size
    SIZE = "size"  # bytes on disk of what the runtime loads
    MACS = "macs"


class BackendChoice(StrEnum):
    AUTO = "auto"  # try ONNX Runtime, torchao (compiled) and OpenVINO; keep what measures best
    TORCH = "torch"
    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"


QUANT_BACKENDS = {
    BackendChoice.AUTO: ("onnxruntime", "torchao", "openvino"),
    BackendChoice.TORCH: ("torchao",),
    BackendChoice.ONNXRUNTIME: ("onnxruntime",),
    BackendChoice.OPENVINO: ("openvino",),
}


class AutoConfig(Config):
    """What to optimise, within which accuracy budget, for how long."""

    max_accuracy_drop: float = Field(1.0, ge=0.0, le=100.0, description="Points of accuracy.")
    objective: Objective = Objective.LATENCY
    backend: BackendChoice = BackendChoice.AUTO
    space: str | None = Field(
        None, description="A registered search space; default: cnn or transformer, by model."
    )
    trials: int = Field(20, ge=1, le=100_000)
    time_budget_min: float | None = Field(None, gt=0.0)
    finetune_epochs: int | None = Field(None, ge=1, description="Default: 40% of the baseline's.")
    sensitivity_samples: int = Field(256, ge=16)
    seed: int = 0

    @field_validator("space")
    @classmethod
    def _known_space(cls, v: str | None) -> str | None:
        from slimkit.search.space import SPACES

        if v is not None and v not in SPACES:
            raise ValueError(SPACES.unknown_message(v))
        return v


@dataclass(frozen=True)
class AutoResult:
    """Where the search landed, its results (with a ``search`` section), and the verdict."""

    run_dir: Path
    results: dict[str, Any]
    met_budget: bool
    message: str
