"""Per-layer sensitivity kept in the cache: reused for the same baseline and examples only."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from slimkit.search.curves import RATIOS, layer_curves


def _val(data, start: int = 0):
    return data.val.subset(torch.arange(start, start + 24))


def _layers(net) -> dict[str, int]:
    return {"0": net[0].weight.numel(), "3": net[3].weight.numel()}


def _entries(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "sensitivity").glob("*.json"))


def test_a_second_search_of_the_same_baseline_reuses_its_curves(trained, tmp_path: Path):
    net, data = trained
    first, reused = layer_curves(net, _val(data), _layers(net))
    assert not reused and [c.layer for c in first] == ["0", "3"]
    assert all(set(c.metric) == set(RATIOS) for c in first)
    again, reused = layer_curves(net, _val(data), _layers(net))
    assert reused and again == first
    # sizes are the caller's (MACs for a speed search, weights for size), not the cache's
    sized, reused = layer_curves(net, _val(data), {"0": 1, "3": 2})
    assert reused and [c.size for c in sized] == [1, 2]
    assert [c.metric for c in sized] == [c.metric for c in first]


def test_other_weights_examples_or_layers_are_measured_afresh(trained, tmp_path: Path):
    net, data = trained
    layer_curves(net, _val(data), _layers(net))
    assert not layer_curves(net, _val(data, start=1), _layers(net))[1]
    assert not layer_curves(net, _val(data), {"0": 1})[1]
    with torch.no_grad():
        net[3].weight[0, 0, 0, 0] += 1e-3
    assert not layer_curves(net, _val(data), _layers(net))[1]
    assert len(_entries(tmp_path)) == 4


def test_a_damaged_entry_is_measured_again_and_no_cache_keeps_none(trained, tmp_path: Path):
    net, data = trained
    first, _ = layer_curves(net, _val(data), _layers(net))
    (entry,) = _entries(tmp_path)
    for damage in ("{not json", json.dumps({"baseline": 99.0, "curves": {"0": {"0.5": "x"}}})):
        entry.write_text(damage)
        again, reused = layer_curves(net, _val(data), _layers(net))
        assert not reused and again == first
    entry.unlink()
    layer_curves(net, _val(data), _layers(net), cache=False)
    assert _entries(tmp_path) == []
