"""One trial of ``slimkit auto``: apply the drawn steps, measure each like a pipeline step,
roll back a compressing step that does not pay, reuse steps an earlier trial already applied,
and record the figures the study and the choice read."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimkit.distillation.configs import CurrentStudent
from slimkit.distillation.step import DistillStepConfig
from slimkit.evaluation import Measurement
from slimkit.models.arch import Arch
from slimkit.pipeline import Session
from slimkit.recipe import StepSpec
from slimkit.search.budget import REUSABLE_S
from slimkit.search.config import FINALISTS, REUSED_STEPS, AutoConfig, Objective
from slimkit.search.space import Space, SpaceInputs
from slimkit.state import ModelState
from slimkit.timing import SLOWER_MARGIN

TRAINING = ("finetune", "distill")


def compresses(spec: StepSpec) -> bool:
    """Whether a step makes the model smaller or faster (and so must pay for itself): pruning,
    quantization, distillation into a new student. Distilling into the current model is
    recovery training, judged by accuracy like fine-tuning."""
    if isinstance(spec.config, DistillStepConfig):
        return not isinstance(spec.config.student, CurrentStudent)
    return spec.kind in ("prune", "quantize")


def pays(objective: Objective, m: Measurement, prev: Measurement) -> bool:
    """Whether a compressing step that turned ``prev`` into ``m`` is worth keeping.

    It must not be slower (beyond timing noise) and must gain on the objective; under
    ``latency`` a step that is as fast and at least 5% smaller pays too.
    """
    assert m.latency is not None and prev.latency is not None
    slower = m.latency.p50 > prev.latency.p50 * SLOWER_MARGIN
    if objective is Objective.LATENCY:
        faster = m.latency.p50 * SLOWER_MARGIN < prev.latency.p50
        return faster or (not slower and m.size_bytes * SLOWER_MARGIN < prev.size_bytes)
    if objective is Objective.SIZE:
        return not slower and m.size_bytes < prev.size_bytes
    return not slower and m.macs < prev.macs


@dataclass(frozen=True)
class _Applied:
    """One step as a trial applied it: the model it gave, measured, whether it paid, and the
    wall time applying it took."""

    state: ModelState
    arch: Arch
    measured: Measurement
    paid: bool
    trial: int
    wall_s: float


class TrialRunner:
    """Applies and measures one trial's steps; the callable Optuna optimises."""

    def __init__(
        self,
        session: Session,
        base_record: Measurement,
        config: AutoConfig,
        floor: float,
        space: Space,
        inputs: SpaceInputs,
    ) -> None:
        self.session, self.base_record = session, base_record
        self.config, self.floor, self.space, self.inputs = config, floor, space, inputs
        # trial number -> (objective value, final model, its kept steps that left a model in
        # memory, held for the run that replays the chosen one) of the best trials within budget
        self.finalists: dict[int, tuple[float, Measurement, dict[str, _Applied]]] = {}
        # the steps kept so far plus the next one -> what applying it gave, and whether it paid
        self.applied: OrderedDict[str, _Applied] = OrderedDict()

    def __call__(self, trial: Any) -> float:
        steps = self.space.draw(trial, self.inputs)
        try:
            with tempfile.TemporaryDirectory(prefix="slimkit-trial-") as tmp:
                return self._run(trial, steps, Path(tmp))
        except Exception as err:  # one failing combination must not end a long search
            trial.set_user_attr("notes", [f"failed: {type(err).__name__}: {err}"])
            raise

    def _run(self, trial: Any, steps: list[StepSpec], root: Path) -> float:
        import optuna

        candidate = self.session.recipe.with_steps(steps)  # named and checked as a recipe's
        state = self.session.baseline_state()
        arch, prev = self.session.base.arch, self.base_record
        kept: list[dict[str, Any]] = []
        chain: dict[str, _Applied] = {}  # the kept steps that left a model in memory
        notes: list[str] = []
        timed = False  # whether ``prev`` was timed beside the baseline in this trial
        reusable_s = 0.0  # seconds spent applying steps a replay of this trial reuses
        for i, spec in enumerate(candidate.steps, 1):
            key = json.dumps([*kept, spec.to_dict()], sort_keys=True, default=str)
            done = self.applied.get(key)
            if done is None:
                stem = root / f"{i:02d}-{spec.name}"
                done = self._apply(trial.number, spec, state, arch, prev, stem)
                if done.state.artifact is None:  # a written artifact lives in this trial's folder
                    self._remember(key, done)
                    reusable_s += done.wall_s  # the final run reuses it rather than apply it
                    trial.set_user_attr(REUSABLE_S, reusable_s)
            else:
                notes.append(f"{spec.name} reused from trial {done.trial}")
            reused = done.trial != trial.number
            if not done.paid:
                notes.append(f"rolled back {spec.name}: {self._describe(done.measured, prev)}")
                timed = timed or not reused  # applied here: timed with the baseline and prev
                continue
            kept.append(spec.to_dict())
            if done.state.artifact is None:
                chain[key] = done
            state, arch, prev = done.state, done.arch, done.measured
            timed = not reused
            if spec.kind in TRAINING and prev.accuracy < self.floor:
                self._record(trial, kept, prev, notes)
                raise optuna.TrialPruned(
                    f"accuracy {prev.accuracy:.2f}% after {spec.name} is below the budget's "
                    f"{self.floor:.2f}%"
                )
        if not timed:  # the baseline alone, or a model reused from a trial timed at another time
            models = [self.base_record] if prev is self.base_record else [self.base_record, prev]
            self.session.time(models)
        value = self._record(trial, kept, prev, notes)
        if prev is not self.base_record and prev.accuracy >= self.floor - 1e-9:
            self._keep_finalist(trial.number, value, prev, chain)
        return value

    def replayed(self, steps: Sequence[StepSpec]) -> tuple[ModelState, Arch, float] | None:
        """What ``steps`` gave when a trial of this search applied them (the model, its arch,
        the wall time), or None: the run that replays the chosen trial reuses the trained
        models instead of training them again (:data:`slimkit.pipeline.Applied`)."""
        key = json.dumps([s.to_dict() for s in steps], sort_keys=True, default=str)
        held = (chain for _, _, chain in self.finalists.values())
        done = next((chain[key] for chain in held if key in chain), self.applied.get(key))
        if done is None:
            return None
        note = f"applied once, in trial {done.trial} of the search"
        return (
            dataclasses.replace(done.state, notes=[*done.state.notes, note]),
            done.arch,
            done.wall_s,
        )

    def _apply(
        self,
        number: int,
        spec: StepSpec,
        state: ModelState,
        arch: Arch,
        prev: Measurement,
        stem: Path,
    ) -> _Applied:
        """Apply one step to ``state``, measure it, time it beside the model before it (and
        the baseline), and judge whether it pays."""
        start = time.perf_counter()
        ctx = self.session.context(stem, arch)
        new = self.session.apply(spec, state, ctx)
        wall_s = time.perf_counter() - start
        arch_after = new.arch or arch
        m = self.session.measure(spec.name, spec.kind, new, ctx.artifact_stem, arch_after)
        records = [self.base_record, prev, m] if prev is not self.base_record else [prev, m]
        self.session.time(records)
        paid = not compresses(spec) or pays(self.config.objective, m, prev)
        return _Applied(new, arch_after, m, paid, number, wall_s)

    def _remember(self, key: str, done: _Applied) -> None:
        self.applied[key] = done
        if len(self.applied) > REUSED_STEPS:
            self.applied.popitem(last=False)

    def _keep_finalist(
        self, number: int, value: float, model: Measurement, chain: dict[str, _Applied]
    ) -> None:
        self.finalists[number] = (value, model, chain)
        if len(self.finalists) > FINALISTS:
            del self.finalists[max(self.finalists, key=lambda n: self.finalists[n][0])]

    def retime(self) -> dict[int, dict[str, float]]:
        """The finalists timed again in one interleaved session with the baseline: their new
        ``latency_ms`` and ``speedup`` (and, under ``latency``, ``objective``) by trial."""
        if len(self.finalists) < 2:
            return {}
        renamed = {
            n: dataclasses.replace(m, name=f"trial-{n}") for n, (_, m, _) in self.finalists.items()
        }
        self.session.time([self.base_record, *renamed.values()])
        assert self.base_record.latency is not None
        base_p50 = self.base_record.latency.p50
        retimed = {}
        for n, m in renamed.items():
            assert m.latency is not None
            figures = {"latency_ms": m.latency.p50, "speedup": base_p50 / m.latency.p50}
            if self.config.objective is Objective.LATENCY:
                figures["objective"] = m.latency.p50 / base_p50
            retimed[n] = figures
        return retimed

    @staticmethod
    def _describe(m: Measurement, prev: Measurement) -> str:
        assert m.latency is not None and prev.latency is not None
        return (
            f"{m.latency.p50:.4g} vs {prev.latency.p50:.4g} ms, "
            f"{m.size_bytes:,} vs {prev.size_bytes:,} bytes on {m.state.runtime}"
        )

    def _record(
        self, trial: Any, kept: list[dict[str, Any]], last: Measurement, notes: list[str]
    ) -> float:
        base = self.base_record
        assert last.latency is not None and base.latency is not None
        ratios = {
            Objective.LATENCY: last.latency.p50 / base.latency.p50,
            Objective.SIZE: last.size_bytes / base.size_bytes,
            Objective.MACS: last.macs / max(base.macs, 1),
        }
        drop = base.accuracy - last.accuracy
        for key, value in {
            "steps": kept,
            "accuracy": last.accuracy,
            "accuracy_drop": drop,
            "latency_ms": last.latency.p50,
            "speedup": base.latency.p50 / last.latency.p50,
            "size_bytes": last.size_bytes,
            "compression": base.size_bytes / last.size_bytes,
            "macs": last.macs,
            "runtime": last.state.runtime,
            "notes": notes,
            "constraint": drop - self.config.max_accuracy_drop,
        }.items():
            trial.set_user_attr(key, value)
        # feasible at <= 0: TPE models the accuracy budget as a constraint
        trial.set_constraint("accuracy_budget", drop - self.config.max_accuracy_drop)
        return ratios[self.config.objective]
