"""An ONNX file is a model source: slimkit's own artifacts and graphs from other tools are
evaluated, benchmarked and quantized with the same figures as the PyTorch model they came from,
and steps that need PyTorch weights refuse them by name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from tests.helpers import family_bundle, tiny_models
from torch import nn

import slimkit
from slimkit.errors import ModelLoadError, RecipeError, StepError
from slimkit.evaluation import count_macs
from slimkit.export import export_onnx
from slimkit.models.graph import OnnxGraph
from slimkit.quantization import (
    DynamicInt8Config,
    StaticInt8Config,
    WeightOnlyInt4Config,
    WeightOnlyInt8Config,
)


def _graph(net: nn.Module, data, path: Path) -> OnnxGraph:
    export_onnx(net, data.sample_inputs(2), data.input_names, path)
    graph = slimkit.build_model(str(path))
    assert isinstance(graph, OnnxGraph)
    return graph


def test_a_graph_is_measured_like_the_model_it_was_exported_from(trained, tmp_path: Path):
    net, data = trained
    graph = _graph(net, data, tmp_path / "cnn.onnx")
    torch_figures = slimkit.evaluate(net, data, rounds=2)
    graph_figures = slimkit.evaluate(graph, data, rounds=2)
    assert graph_figures["runtime"] == "onnxruntime"
    assert graph_figures["accuracy"] == torch_figures["accuracy"]
    assert graph_figures["macs"] == torch_figures["macs"]
    # BatchNorm is folded into the convolutions it follows: the graph stores their weights only
    stored = sum(
        p.numel()
        for m in net.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
        for p in m.parameters()
    )
    assert graph_figures["params"] == graph_figures["nonzero_params"] == stored
    assert graph_figures["size_bytes"] == (tmp_path / "cnn.onnx").stat().st_size
    with pytest.raises(StepError, match=r"ONNX graph, which eager cannot serve.*onnxruntime"):
        slimkit.evaluate(graph, data, runtime="eager")


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bert", "llama", "vit"])
def test_graph_macs_match_pytorch_through_every_onnx_runtime_quantization(
    family: str, tmp_path: Path
):
    """Counted from one run of the graph, so ONNX Runtime's own ops (MatMulInteger,
    MatMulNBits) count as the matrix products they are; GQA and image inputs included."""
    net, data = tiny_models().tiny_hf(family), family_bundle(family)
    x = data.sample_inputs(1)
    want = count_macs(net, x)
    float_graph = _graph(net, data, tmp_path / "float.onnx")
    assert count_macs(float_graph, x) == want
    for config in (
        DynamicInt8Config(recover=False),
        StaticInt8Config(calibration_samples=16, recover=False),
        WeightOnlyInt8Config(recover=False),
        WeightOnlyInt4Config(group_size=16, recover=False),
    ):
        path = tmp_path / f"{config.mode}.onnx"
        slimkit.quantize(float_graph, config, data, out_path=path)  # the graph, exported once
        graph = slimkit.build_model(str(path))
        assert count_macs(graph, x) == want, config.mode
        # int4 blocks count as the weights they hold, not as the bytes that pack them
        assert graph.params >= float_graph.params


def test_a_recipe_quantizes_a_graph_and_refuses_what_needs_pytorch_weights(trained, tmp_path: Path):
    net, data = trained
    _graph(net, data, tmp_path / "cnn.onnx")
    np_data = tmp_path / "blobs.npz"
    import numpy as np

    x = torch.cat([b[0][0] for b in data.test.batches(256)]).numpy()
    y = torch.cat([b[1] for b in data.test.batches(256)]).numpy()
    np.savez(np_data, x=x, y=y)
    recipe = {
        "model": str(tmp_path / "cnn.onnx"),
        "data": f"npz:{np_data}",
        "evaluation": {"warmup": 1, "rounds": 2, "per_round": 1},
        "steps": [{"quantize": {"mode": "static-int8", "calibration_samples": 32}}],
    }
    steps = slimkit.run(slimkit.Recipe.from_dict(recipe), out=tmp_path / "run").results["steps"]
    assert [s["runtime"] for s in steps] == ["onnxruntime", "onnxruntime"]
    assert steps[1]["size_bytes"] < steps[0]["size_bytes"] / 1.5
    assert steps[1]["macs"] == steps[0]["macs"] == count_macs(net, data.sample_inputs(1))
    assert abs(steps[1]["accuracy"] - steps[0]["accuracy"]) <= 2.0

    refused = {
        "prune": ({"method": "magnitude", "sparsity": 0.5}, r"prune.*changes PyTorch weights"),
        "quantize": ({"mode": "static-int8", "backend": "torchao"}, "use backend onnxruntime"),
    }
    for kind, (config, message) in refused.items():
        bad = {**recipe, "steps": [{kind: config}]}
        with pytest.raises(StepError, match=message):
            slimkit.run(slimkit.Recipe.from_dict(bad), out=tmp_path / f"bad-{kind}")
    trains = {**recipe, "baseline": {"train": {"epochs": 1}}, "steps": []}
    with pytest.raises(RecipeError, match=r"baseline.train.*ONNX graph"):
        slimkit.run(slimkit.Recipe.from_dict(trains), out=tmp_path / "bad-train")


def _accuracy(out: str) -> float:
    """The accuracy row of ``slimkit eval``'s table."""
    found = re.search(r"accuracy\W+([\d.]+)", out)
    assert found, out
    return float(found.group(1))


def test_slimkit_eval_scores_a_runs_quantized_graph_as_the_run_did(
    blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path, cli
):
    from tests.helpers import tiny_recipe

    recipe = slimkit.Recipe.from_dict(tiny_recipe(blobs_npz, seed=0))
    results = slimkit.run(recipe, out=tmp_path / "run").results
    step = results["steps"][-1]
    artifact = tmp_path / "run" / step["artifact"]
    assert artifact.suffix == ".onnx"
    # the run scored its test split; --data names the same split of the same file
    split = json.dumps(recipe.data.to_dict())
    done = cli("eval", "--model", str(artifact), "--data", split)
    assert done.code == 0, done.err
    assert _accuracy(done.out) == pytest.approx(step["accuracy"], abs=0.01)  # printed to 4 digits
    assert "onnxruntime" in done.out


@pytest.mark.slow
def test_a_text_graph_of_a_run_finds_its_tokenizer_through_the_runs_recipe(
    distilbert_dir: Path, texts: Path, tmp_path: Path, cli
):
    data = {"source": f"csv:{texts}", "max_length": 16}
    recipe = slimkit.Recipe.from_dict(
        {
            "model": f"hf:{distilbert_dir}",
            "data": data,
            "evaluation": {"warmup": 1, "rounds": 2, "per_round": 1},
            "steps": [{"quantize": {"mode": "dynamic-int8", "recover": False}}],
        }
    )
    step = slimkit.run(recipe, out=tmp_path / "run").results["steps"][-1]
    artifact = tmp_path / "run" / step["artifact"]
    done = cli("eval", "--model", str(artifact), "--data", json.dumps(data))
    assert done.code == 0, done.err
    assert _accuracy(done.out) == pytest.approx(step["accuracy"], abs=0.01)  # printed to 4 digits


def test_a_file_that_is_not_an_onnx_graph_is_named(tmp_path: Path, trained):
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not a protobuf")
    with pytest.raises(ModelLoadError, match=r"model.onnx is not an ONNX model"):
        slimkit.build_model(str(fake))
    net, data = trained
    _graph(net, data, tmp_path / "cnn.onnx")
    spec = {"source": str(tmp_path / "cnn.onnx"), "kwargs": {"width": 2}}
    with pytest.raises(ModelLoadError, match="takes only the kwarg tokenizer"):
        slimkit.build_model(spec)
