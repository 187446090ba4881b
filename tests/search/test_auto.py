"""slimkit auto on a tiny model: the Pareto front, the chosen recipe, storage and resume."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from tests.helpers import tiny_recipe

import slimkit
from slimkit.pipeline import Session
from slimkit.results import points
from slimkit.search import AutoConfig, auto, pareto_front
from slimkit.search import trials as search_trials
from slimkit.search.budget import REUSABLE_S, Deadline
from slimkit.search.config import STUDY
from slimkit.search.selection import choose


def test_pareto_front_of_given_points():
    # (accuracy lost, latency, size): lower is better on each axis
    points = [(0.1, 5.0, 100), (0.5, 2.0, 100), (0.5, 2.0, 120), (1.0, 1.0, 50), (0.1, 6.0, 90)]
    assert pareto_front(points) == [True, True, False, True, True]
    assert pareto_front([(1, 1), (1, 1)]) == [True, True]  # equal points dominate neither


def _trial(
    number: int, drop: float, objective: float, budget: float = 1.0, size: int = 1000
) -> dict:
    return {
        "number": number,
        "state": "COMPLETE",
        "accuracy": 99.0 - drop,
        "accuracy_drop": drop,
        "objective": objective,
        "constraint": drop - budget,
        "speedup": 1 / objective,
        "latency_ms": objective,
        "size_bytes": size,
        "compression": 2000 / size,
    }


def test_choice_is_the_best_objective_within_budget():
    trials = [_trial(0, 0.2, 0.5), _trial(1, 2.0, 0.1), _trial(2, 0.9, 0.3)]
    chosen, met, message = choose(trials, AutoConfig(max_accuracy_drop=1.0), 99.0)
    assert chosen["number"] == 2 and met and message.startswith("trial 2: 3.33x faster")


def test_an_impossible_budget_ends_with_the_most_accurate_trial_and_says_so():
    trials = [_trial(0, 0.8, 0.5, 0.1), _trial(1, 2.0, 0.1, 0.1)]
    chosen, met, message = choose(trials, AutoConfig(max_accuracy_drop=0.1), 99.0)
    assert chosen["number"] == 0 and not met
    assert "No trial kept accuracy within 0.1 points" in message and "lost 0.80" in message


@pytest.fixture
def base_recipe(blobs_npz: Path, fixtures_on_path: Path) -> slimkit.Recipe:
    recipe = tiny_recipe(blobs_npz, steps=[])
    recipe["baseline"]["train"]["epochs"] = 6
    recipe["steps"] = [{"finetune": {"epochs": 1}}]  # ignored by auto
    return slimkit.Recipe.from_dict(recipe)


@pytest.mark.slow
def test_search_writes_a_study_a_front_and_a_recipe_that_reproduces_the_choice(
    base_recipe: slimkit.Recipe, tmp_path: Path
):
    config = AutoConfig(max_accuracy_drop=2.0, trials=4, finetune_epochs=2, backend="onnxruntime")
    result = auto(base_recipe, config, tmp_path / "search")
    run_dir = result.run_dir
    search = result.results["search"]
    assert len(search["trials"]) == 4 and (run_dir / "search" / "search.db").is_file()
    finished = [t for t in search["trials"] if t["state"] == "COMPLETE"]
    assert finished and any(t["pareto"] for t in finished)
    # the front is exactly the non-dominated finished trials
    axes = [(-t["accuracy"], 1 / t["speedup"], t["size_bytes"]) for t in finished]
    assert [t["pareto"] for t in finished] == pareto_front(axes)
    chosen = next(t for t in search["trials"] if t["number"] == search["chosen_trial"])
    assert result.met_budget and chosen["accuracy_drop"] <= 2.0
    # the best trials within budget were timed again side by side; the search's figures kept
    feasible = [t for t in finished if t["accuracy_drop"] <= 2.0 and t["steps"]]
    assert len(search["retimed"]) == (min(3, len(feasible)) if len(feasible) > 1 else 0)
    for t in search["trials"]:
        assert ("timed_in_search" in t) == (t["number"] in search["retimed"])
    # the run directory is a plain run of the chosen recipe, and the report shows the search
    best = yaml.safe_load((run_dir / "best-recipe.yaml").read_text())
    assert best["steps"] == json.loads(json.dumps(chosen["steps"]))
    final = result.results["steps"][-1]
    assert final["accuracy"] == pytest.approx(chosen["accuracy"], abs=2.0)
    assert final["size_bytes"] == pytest.approx(chosen["size_bytes"], rel=0.02)
    html = (run_dir / "report.html").read_text()
    assert 'data-plot="pareto"' in html and 'data-plot="sensitivity"' in html
    assert ("(in search " in html) == bool(search["retimed"])  # both timings shown
    # the last line quotes the final run's figures, not the search's (12.27x where it got 6.78x)
    s = result.results["summary"]
    assert result.message.startswith(
        f"trial {chosen['number']}, run again: {s['speedup']:.2f}x faster, "
        f"{s['compression']:.2f}x smaller, {points(s['accuracy_drop'])} vs the baseline"
    )
    again = slimkit.run(slimkit.Recipe.load(run_dir / "best-recipe.yaml"), out=tmp_path / "again")
    assert again.results["steps"][-1]["size_bytes"] == pytest.approx(final["size_bytes"], rel=0.02)
    assert again.results["steps"][-1]["accuracy"] == pytest.approx(final["accuracy"], abs=2.0)


@pytest.mark.slow
def test_an_interrupted_search_resumes_without_losing_trials(
    base_recipe: slimkit.Recipe, tmp_path: Path
):
    config = AutoConfig(trials=2, finetune_epochs=1, backend="onnxruntime")
    first = auto(base_recipe, config, tmp_path / "search")
    storage = f"sqlite:///{first.run_dir / 'search' / 'search.db'}"
    before = optuna.load_study(study_name=STUDY, storage=storage).trials
    resumed = auto(None, config.model_copy(update={"trials": 3}), resume=first.run_dir)
    after = optuna.load_study(study_name=STUDY, storage=storage).trials
    assert len(before) == 2 and len(after) == 3
    # each trial records the time its trained models would save a replay, within its length
    reusable = [t.user_attrs.get(REUSABLE_S, 0.0) for t in before]
    assert any(r > 0 for r in reusable)
    for t, r in zip(before, reusable, strict=True):
        assert r <= (t.datetime_complete - t.datetime_start).total_seconds()
    assert [t.params for t in after[:2]] == [t.params for t in before]
    assert len(resumed.results["search"]["trials"]) == 3
    # the resumed search measured the baseline's sensitivity again from the cache
    assert not first.results["search"]["sensitivity_reused"]
    assert resumed.results["search"]["sensitivity_reused"]


@pytest.mark.slow
def test_a_trial_that_begins_like_an_earlier_one_reuses_its_steps(
    base_recipe: slimkit.Recipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    study = optuna.create_study(storage=storage, study_name=STUDY)
    params = {
        "student": "none",
        "channels": 0.5,
        "importance": "l2",
        "spread": "uniform",
        "keep_sensitive": 0,
        "channels_epochs": 1,
        "resolution": 1.0,
        "channels_kd": False,
    }
    study.enqueue_trial({**params, "quantize": "none"})
    study.enqueue_trial({**params, "quantize": "static-int8@onnxruntime"})
    study.enqueue_trial({**params, "quantize": "none"})
    timed: list[list[str]] = []  # the models each interleaved timing session held
    real_time = Session.time

    def spy(session, records, *args):
        timed.append([r.name for r in records])
        return real_time(session, records, *args)

    monkeypatch.setattr(Session, "time", spy)
    # every step pays: what is reused must not hang on whether a tiny net timed faster pruned
    monkeypatch.setattr(search_trials, "pays", lambda *_: True)
    config = AutoConfig(trials=3, finetune_epochs=1, backend="onnxruntime")
    result = auto(base_recipe, config, tmp_path / "s", storage=storage)
    first, second, third = result.results["search"]["trials"]
    assert first["params"] == {**params, "quantize": "none"}
    assert not any("reused" in n for n in first["notes"])
    assert {"prune reused from trial 0", "finetune reused from trial 0"} <= set(second["notes"])
    # a trial made entirely of earlier steps is timed again beside the baseline, not compared
    # with a baseline timed at another moment
    assert {"prune reused from trial 0", "finetune reused from trial 0"} <= set(third["notes"])
    assert ["baseline", "finetune"] in timed
    # the run that replays the chosen trial measures its trained models again, not trains them
    replayed = {s["name"]: s["notes"] for s in result.results["steps"]}
    for name in ("prune", "finetune"):
        assert any(n.startswith("applied once, in trial ") for n in replayed[name])


def test_auto_cli_without_a_recipe_or_model_says_what_to_give(cli):
    result = cli("auto", "--trials", "1")
    assert result.code == 2 and "Give --recipe, or --model and --data" in result.err


@pytest.mark.parametrize(
    ("objective", "p50", "size", "macs", "kept"),
    [
        ("latency", 0.5, 100, 100, True),  # faster
        ("latency", 1.0, 50, 100, True),  # as fast, half the size (vocabulary trimming)
        ("latency", 1.0, 99, 50, False),  # as fast, no smaller: fewer MACs alone do not pay
        ("latency", 1.5, 10, 10, False),  # slower
        ("size", 1.0, 50, 100, True),
        ("size", 1.5, 50, 100, False),
        ("macs", 1.0, 100, 50, True),
        ("macs", 1.0, 50, 100, False),
    ],
)
def test_a_step_pays_when_it_gains_without_slowing(objective, p50, size, macs, kept):
    from slimkit.evaluation import LatencyStats, Measurement
    from slimkit.search.config import Objective
    from slimkit.search.trials import pays
    from slimkit.state import ModelState

    def measured(p50: float, size: int, macs: int) -> Measurement:
        m = Measurement("m", "m", ModelState(torch.nn.Identity()), None, {}, 1, 1, macs, size)  # type: ignore[arg-type]
        m.latency = LatencyStats(p50, p50, 1, 1)
        return m

    before = measured(1.0, 100, 100)
    assert pays(Objective(objective), measured(p50, size, macs), before) is kept


@pytest.mark.parametrize(
    ("step", "compressing"),
    [
        ({"prune": {"method": "channels", "ratio": 0.5}}, True),
        ({"quantize": {"mode": "dynamic-int8"}}, True),
        ({"distill": {"student": {"keep_every": 2}}}, True),  # a new, smaller student
        # recovery: the pruned model itself learns from the baseline, judged like fine-tuning
        ({"distill": {"teacher": "baseline", "student": {"current": True}}}, False),
        ({"finetune": {"epochs": 1}}, False),
    ],
)
def test_recovery_training_is_never_rolled_back_as_a_compression_that_did_not_pay(
    step, compressing
):
    from slimkit.search.trials import compresses

    spec = slimkit.Recipe.from_dict({"model": "m", "data": "d", "steps": [step]}).steps[0]
    assert compresses(spec) is compressing


def test_a_gain_reads_as_one():
    """'-0.84 points lost' meant a gain."""
    assert points(-0.84) == "0.84 points gained" and points(0.84) == "0.84 points lost"
    _, _, message = choose([_trial(0, -0.84, 0.5)], AutoConfig(), 99.0)
    assert "0.84 points gained" in message


class _Study:
    stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_the_budget_leaves_time_for_the_final_run():
    """--time-budget 8 took 12 min 26 s: it bounded the search, not the command."""
    now = [0.0]
    deadline = Deadline(100.0, clock=lambda: now[0])
    now[0] = 20.0  # preparing the baseline and its sensitivity
    deadline.searching()
    study, trials = _Study(), 0
    while not study.stopped:
        now[0] += 10.0  # each trial takes 10 s
        trials += 1
        deadline.after_trial(study, _Trial(reusable_s=0.0))
    # six trials end at 80 s: 20 s are left, enough for the final run (one trial) and re-timing
    assert trials == 6 and now[0] == 80.0
    assert deadline.search_left() < deadline.longest_trial_s <= 100.0 - now[0]
    ticks = iter([0.0, 50.0])  # the baseline alone took longer than the budget
    assert Deadline(10.0, clock=lambda: next(ticks)).search_left() == 0.0


def test_the_final_run_reserves_only_what_a_replay_does_not_reuse():
    """W3's 60-minute search stopped after its first trial, at 31.9 minutes: it held back 1.5
    trials for a final run that reuses the trial's trained models."""
    now = [0.0]
    deadline = Deadline(100.0, clock=lambda: now[0])
    deadline.searching()
    study, trials = _Study(), 0
    while not study.stopped:
        now[0] += 20.0  # each trial takes 20 s, 16 of them training models a replay reuses
        trials += 1
        deadline.after_trial(study, _Trial(reusable_s=16.0))
    # four trials end at 80 s; the final run needs 1.5 x 4 s of the 20 left
    assert trials == 4 and now[0] == 80.0
    assert deadline.longest_trial_s == 20.0 and deadline.longest_replay_s == 4.0
    assert deadline.search_left() == pytest.approx(100.0 - 80.0 - 1.5 * 4.0)
    # a trial that reused nothing costs the final run all of its length
    now[0] += 20.0
    deadline.after_trial(study, _Trial(reusable_s=0.0))
    assert deadline.longest_replay_s == 20.0


class _Trial:
    """What the deadline reads of a finished Optuna trial."""

    def __init__(self, reusable_s: float) -> None:
        self.user_attrs = {REUSABLE_S: reusable_s}


@pytest.mark.slow
def test_a_trial_edited_in_the_study_database_to_name_code_is_refused(
    base_recipe: slimkit.Recipe, tmp_path: Path, cli
):
    """A study database is shared (--storage) and untrusted: the chosen trial's steps come from
    it, so an edited trial must not get the final run to import a factory."""
    import sqlite3

    from slimkit.errors import UnsafeCheckpointError

    config = AutoConfig(max_accuracy_drop=100.0, trials=1, finetune_epochs=1, backend="onnxruntime")
    first = auto(base_recipe, config, tmp_path / "search")
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.py"
    evil.write_text(
        f"import pathlib\n\ndef make(**kw):\n    pathlib.Path({str(marker)!r}).touch()\n"
    )
    steps = [{"name": "distill", "distill": {"student": {"model": {"source": f"{evil}:make"}}}}]
    with sqlite3.connect(first.run_dir / "search" / "search.db") as db:
        db.execute(
            "UPDATE trial_user_attributes SET value_json = ? WHERE key = 'steps'",
            (json.dumps(steps),),
        )
    with pytest.raises(UnsafeCheckpointError, match="the database was edited"):
        auto(None, config, resume=first.run_dir)
    assert not marker.exists()
