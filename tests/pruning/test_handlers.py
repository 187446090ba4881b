"""Pruning methods are found by config type and fed what their config declares it needs; a
method written outside slimkit plugs in with a config and one decorated handler."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.helpers import tiny_recipe
from torch import nn

from slimkit.errors import StepError
from slimkit.pruning import (
    PRUNE_METHODS,
    ChannelConfig,
    MagnitudeConfig,
    Need,
    VocabConfig,
    prune,
)
from slimkit.pruning.handlers import handler_for


def test_every_registered_method_has_a_handler():
    for method in PRUNE_METHODS:
        assert callable(handler_for(PRUNE_METHODS.get(method))), method


def test_a_method_gets_what_its_config_needs_or_says_what_is_missing():
    assert ChannelConfig(ratio=0.5).needs() == {Need.EXAMPLE_INPUTS}
    assert ChannelConfig(ratio=0.5, importance="taylor").needs() == {
        Need.EXAMPLE_INPUTS,
        Need.BATCHES,
    }
    assert MagnitudeConfig(sparsity=0.5).needs() == frozenset()
    assert MagnitudeConfig(sparsity=0.5, scope="sensitivity").needs() == {Need.DATA}
    assert VocabConfig().needs() == {Need.BATCHES, Need.TOKENIZER}
    assert VocabConfig(unk_token=0).needs() == {Need.BATCHES}
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    net(torch.randn(1, 1, 6, 6))
    with pytest.raises(StepError, match=r"channels pruning needs batches and example_inputs"):
        prune(net, ChannelConfig(ratio=0.5, importance="taylor"))


PLUGIN = """
import sys
from typing import Literal

import torch
from torch import nn

import slimkit
from slimkit.pruning import PRUNE_METHODS, PruneConfig, PruneInputs, prune, register_pruner


class HeadHalfConfig(PruneConfig):
    \"\"\"A user's method: zero the smaller half of the output layer's weights.\"\"\"

    method: Literal["head-half"] = "head-half"


PRUNE_METHODS.add("head-half", HeadHalfConfig)


@register_pruner(HeadHalfConfig)
def head_half(model: nn.Module, config: HeadHalfConfig, given: PruneInputs) -> nn.Module:
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        w = head.weight
        w[w.abs() <= w.abs().flatten().median()] = 0.0
    return model


net = slimkit.build_model("tiny_models:tiny_cnn", num_classes=3, in_channels=1)
pruned = prune(net, HeadHalfConfig())
assert int((pruned[-1].weight == 0).sum()) >= pruned[-1].weight.numel() // 2
assert int((net[-1].weight == 0).sum()) == 0
recipe = slimkit.Recipe.load(sys.argv[1])
result = slimkit.run(recipe, out=sys.argv[2])
base, step = result.results["steps"]
print(base["nonzero_params"] - step["nonzero_params"])
"""


@pytest.mark.slow
def test_a_method_written_outside_slimkit_runs_from_the_verb_and_a_recipe(
    blobs_npz: Path, tmp_path: Path
):
    """Run in its own process: registering a method is global, and must not leak into the
    registry other tests read."""
    import os
    import subprocess
    import sys

    import yaml
    from tests.helpers import FIXTURES

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump(tiny_recipe(blobs_npz, steps=[{"prune": {"method": "head-half"}}]))
    )
    script = tmp_path / "plugin.py"
    script.write_text(PLUGIN)
    proc = subprocess.run(
        [sys.executable, str(script), str(recipe), str(tmp_path / "run")],
        env={**os.environ, "PYTHONPATH": str(FIXTURES)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split()[-1]) >= 3 * 16 // 2  # half of tiny_cnn(width 8)'s head
