"""Benchmark PyTorch's memory layouts for the convolutional training and scoring slimkit does.

slimkit trains and scores convolutional networks with their weights channels-last
(:mod:`slimkit.models.layout`); this times each phase both ways, interleaved in one process:

- **W1** (resnet-mini, 28 px digits, batch 64): a training step (forward, backward, AdamW), fp32
  as demo.yaml trains it.
- **W3** (EfficientNet-Lite0, 224 px solar cells, batch 32): a fine-tuning step in fp32 and in
  bf16 autocast (lite0-elpv.yaml's baseline), the teacher's forward in bf16 as distillation
  runs it on every augmented batch, a distillation step of the search's corner student (half
  of each stage's blocks, seeing 168 px) with that teacher, and an fp32 forward at batch 64 as
  validation and the sensitivity pass score.

Each figure is the median over ``--repeats`` rounds of each round's median step; the layouts
alternate within a round. ``speedup`` is NCHW time over channels-last time.

    python benchmarks/layout.py --json bench-results/layout.json
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _common import finish, median, parser, print_table
from slimkit.distillation.losses import kd_loss
from slimkit.models.blocks import drop_blocks, shallower
from slimkit.models.efficientnet import efficientnet_lite0
from slimkit.models.layout import channels_last
from slimkit.models.resolution import resize_inputs
from slimkit.models.vision import resnet_mini

COLUMNS = ["workload", "method", "precision", "nchw_ms", "channels_last_ms", "speedup"]
THREADS = 2
NOISE = 0.95


def _train_step(model: nn.Module, x: torch.Tensor, bf16: bool = False) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    y = torch.zeros(x.shape[0], dtype=torch.long)

    def step() -> None:
        model.train()
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _forward(model: nn.Module, x: torch.Tensor, bf16: bool = False) -> Callable[[], None]:
    def forward() -> None:
        model.eval()
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            model(x)

    return forward


def _distill_step(teacher: nn.Module, student: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """One bf16 step of the search's corner: the teacher's soft targets on the batch, the
    student's KD loss (T=2, alpha 0.5) backward."""
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4)
    y = torch.zeros(x.shape[0], dtype=torch.long)

    def step() -> None:
        teacher.eval()
        student.train()
        with torch.autocast("cpu", torch.bfloat16):
            with torch.no_grad():
                soft = teacher(x).float()
            logits = student(x).float()
        loss = kd_loss(logits, soft, y, temperature=2.0, alpha=0.5)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _time(fn: Callable[[], None], steps: int) -> float:
    """The median of ``steps`` calls after one untimed call, in ms."""
    fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return median(times)


def _lite0(pretrained: bool) -> nn.Module:
    return efficientnet_lite0(num_classes=4, in_channels=1, pretrained=pretrained)


def _corner_student(teacher: nn.Module, side: int) -> nn.Module:
    student = copy.deepcopy(teacher)
    drop_blocks(student, shallower(student, 0.5))
    resize_inputs(student, (side * 3 // 4, side * 3 // 4))
    return student


Case = tuple[str, str, str, list[nn.Module], tuple[torch.Tensor], Callable[[], None]]


def cases(quick: bool) -> list[Case]:
    """``(workload, phase, precision, the models it runs, a sample of their inputs, one call
    of the phase)``."""
    side, batch = (32, 4) if quick else (224, 32)
    torch.manual_seed(0)
    digits = torch.randn(8 if quick else 64, 1, 28, 28)
    cells = torch.randn(batch, 1, side, side)
    w1 = resnet_mini(num_classes=10)
    tuned, tuned_bf16, teacher, scored = (_lite0(pretrained=not quick) for _ in range(4))
    student = _corner_student(teacher, side)
    corner = "distillation step, corner student (depth 0.5, 168 px)"
    w3 = (cells[:2],)
    return [
        ("W1", "resnet-mini training step", "fp32", [w1], (digits[:2],), _train_step(w1, digits)),
        ("W3", "Lite0 fine-tuning step", "fp32", [tuned], w3, _train_step(tuned, cells)),
        (
            "W3",
            "Lite0 fine-tuning step",
            "bf16",
            [tuned_bf16],
            w3,
            _train_step(tuned_bf16, cells, bf16=True),
        ),
        ("W3", "Lite0 teacher forward", "bf16", [teacher], w3, _forward(teacher, cells, bf16=True)),
        ("W3", corner, "bf16", [teacher, student], w3, _distill_step(teacher, student, cells)),
        (
            "W3",
            "Lite0 scoring forward, batch 64",
            "fp32",
            [scored],
            w3,
            _forward(scored, torch.cat([cells, cells])),
        ),
    ]


def main() -> None:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--steps", type=int, default=5, help="timed calls per layout per round")
    args = cli.parse_args()
    torch.set_num_threads(THREADS)
    repeats, steps = (1, 2) if args.quick else (args.repeats, args.steps)
    rows = []
    for workload, phase, precision, models, sample, call in cases(args.quick):
        times: dict[str, list[float]] = {"nchw": [], "channels_last": []}
        for _ in range(repeats):
            times["nchw"].append(_time(call, steps))
            with ExitStack() as layouts:
                for model in models:
                    assert layouts.enter_context(channels_last(model, sample)), phase
                times["channels_last"].append(_time(call, steps))
        nchw, last = median(times["nchw"]), median(times["channels_last"])
        rows.append(
            {
                "workload": workload,
                "method": phase,
                "precision": precision,
                "nchw_ms": round(nchw, 2),
                "channels_last_ms": round(last, 2),
                "speedup": round(nchw / last, 3),
            }
        )
    print_table("Memory layout: NCHW vs channels-last weights", rows, columns=COLUMNS)
    # the same code timed twice differs by a few percent on this machine
    slower = [f"{r['method']} ({r['precision']})" for r in rows if r["speedup"] < NOISE]
    checks = {
        f"channels-last no slower than NCHW in any phase (>= {NOISE}x, the timing noise)": (
            not slower,
            "slower in " + ", ".join(slower) if slower else "every phase",
        )
    }
    finish(args.json, THREADS, rows, checks)


if __name__ == "__main__":
    main()
