"""Sensitivity analysis: curves, the greedy allocation, the recipe option and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

import slimkit
from slimkit.errors import StepError
from slimkit.pruning.sensitivity import LayerSensitivity, allocate, layer_sensitivity


def test_allocation_prunes_where_it_is_cheapest_until_the_target():
    # "big" loses nothing up to 90%; "small" loses 5 points at 50%. 80% overall of 1,100
    # weights = 880: the big layer alone supplies 900 at 90%, so "small" is never touched.
    curves = [
        LayerSensitivity("big", 1000, 99.0, {0.5: 99.0, 0.9: 99.0}),
        LayerSensitivity("small", 100, 99.0, {0.5: 94.0, 0.9: 50.0}),
    ]
    assert allocate(curves, 0.8) == {"big": 0.9, "small": 0.0}
    # 90% overall = 990 weights: big gives 900, small must go to 0.9 (the next level past 0.5)
    assert allocate(curves, 0.9) == {"big": 0.9, "small": 0.9}


def test_an_unreachable_target_is_named():
    curves = [LayerSensitivity("a", 10, 90.0, {0.5: 90.0})]
    with pytest.raises(StepError, match="Overall sparsity 80% is out of reach"):
        allocate(curves, 0.8)


def test_curves_measure_each_layer_alone():
    net = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 2, bias=False))
    seen: list[tuple[int, int]] = []

    def evaluate(m: nn.Module) -> float:
        zeros = (int((m[0].weight == 0).sum()), int((m[1].weight == 0).sum()))
        seen.append(zeros)
        return 100.0 - sum(zeros)

    curves = layer_sensitivity(net, evaluate, ratios=(0.5,))
    assert seen == [(0, 0), (8, 0), (0, 4)]  # baseline, then one layer at a time
    assert [(c.layer, c.size, c.drop(0.5)) for c in curves] == [("0", 16, 8.0), ("1", 8, 4.0)]
    assert int((net[0].weight == 0).sum()) == 0  # the model itself is untouched


def test_recipe_scope_sensitivity_reaches_the_overall_sparsity(
    blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path
):
    recipe = slimkit.Recipe.from_dict(
        {
            "model": {"source": "tiny_models:tiny_cnn", "kwargs": {"width": 8}},
            "data": f"npz:{blobs_npz}",
            "baseline": {"train": {"epochs": 3, "lr": 0.02, "batch_size": 16}},
            "evaluation": {"warmup": 1, "rounds": 2, "per_round": 2},
            "steps": [{"prune": {"method": "magnitude", "sparsity": 0.6, "scope": "sensitivity"}}],
        }
    )
    step = slimkit.run(recipe, out=tmp_path / "run").results["steps"][1]
    assert step["notes"][0].startswith("sensitivity allocation for 60% overall: ")
    weights = 8 * 9 + 16 * 8 * 9 + 16 * 3
    assert step["params"] - step["nonzero_params"] >= 0.6 * weights


def test_cli_writes_table_json_and_plot_and_never_overwrites(
    cli, blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path
):
    args = [
        "sensitivity",
        "--model",
        "tiny_models:tiny_cnn",
        "--data",
        str(blobs_npz),
        "--ratios",
        "0.5,0.9",
        "--target-sparsity",
        "0.5",
        "--out",
        str(tmp_path / "s"),
    ]
    result = cli(*args)
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "s" / "sensitivity.json").read_text())
    assert [row["layer"] for row in report["layers"]] == ["0", "3", "8"]
    assert set(report["allocation"]) == {"0", "3", "8"}
    assert (tmp_path / "s" / "sensitivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        "| layer | weights | drop @50% | drop @90% | allocated |"
        in (tmp_path / "s" / "sensitivity.md").read_text()
    )
    again = cli(*args)
    assert again.code == 2 and "already exists and is not empty" in again.err
    assert cli(*args[:-2], "--ratios", "half", "--out", str(tmp_path / "t")).code == 2


def test_prune_with_sensitivity_scope_measures_layers_on_the_data_it_is_given(trained):
    config = slimkit.pruning.MagnitudeConfig(sparsity=0.5, scope="sensitivity")
    with pytest.raises(StepError, match=r"magnitude pruning needs data .* or the data set"):
        slimkit.prune(nn.Sequential(nn.Linear(4, 4)), config)
    net, data = trained
    pruned = slimkit.prune(net, config, data=data)
    layers = [m.weight for m in pruned.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in layers) / sum(w.numel() for w in layers)
    assert zeros >= 0.5  # per-layer levels chosen until the overall share is reached


def test_a_layer_of_size_zero_is_left_whole_and_the_target_reached_on_the_others():
    # MAC sizes: a layer that never ran counts 0 and can remove nothing
    curves = [
        LayerSensitivity("idle", 0, 99.0, {0.5: 99.0, 0.8: 99.0}),
        LayerSensitivity("busy", 100, 99.0, {0.5: 98.0, 0.8: 97.0}),
    ]
    assert allocate(curves, 0.5) == {"idle": 0.0, "busy": 0.5}
