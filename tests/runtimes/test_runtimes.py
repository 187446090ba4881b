"""Every runtime serves the same function as the PyTorch model, from its own artifact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import slimkit
from slimkit.errors import StepError
from slimkit.export import export_onnx
from slimkit.runtimes import prepare
from slimkit.runtimes.base import ServeContext
from slimkit.runtimes.onnxruntime import fastest_threads
from slimkit.state import ModelState
from slimkit.timing import measure_latency


@pytest.mark.parametrize(
    ("backend", "suffix"),
    [
        ("eager", ".safetensors"),
        ("onnxruntime", ".onnx"),
        ("openvino", ".xml"),
        pytest.param("compile", ".safetensors", marks=pytest.mark.slow),
    ],
)
def test_runtimes_match_pytorch(tmp_path: Path, backend: str, suffix: str):
    net = slimkit.build_model("small-cnn", num_classes=4, in_channels=1, width=4, depth=2).eval()
    x = torch.randn(3, 1, 12, 12)
    prepared = prepare(
        ModelState(net, backend),
        tmp_path / "m",
        input_names=("pixels",),
        sample_inputs=(x,),
        threads=1,
        arch={"source": "small-cnn", "kwargs": {"num_classes": 4, "width": 4, "depth": 2}},
    )
    assert prepared.artifact.suffix == suffix and prepared.artifact.stat().st_size > 0
    with torch.inference_mode():
        want = net(x)
        got = prepared.engine((x,))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_an_int8_graph_cannot_be_served_by_pytorch(tmp_path: Path):
    net = slimkit.build_model("small-cnn", num_classes=4, in_channels=1)
    state = ModelState(net, "eager", artifact=tmp_path / "q.onnx")
    with pytest.raises(StepError, match="eager cannot run: serve it on onnxruntime"):
        prepare(
            state,
            tmp_path / "m",
            input_names=("pixels",),
            sample_inputs=(torch.zeros(1, 1, 8, 8),),
            threads=1,
            arch={},
        )


@pytest.mark.parametrize("threads", [1, 2])
def test_onnxruntime_keeps_the_thread_count_that_measured_faster_and_says_so(tmp_path, threads):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    inputs = (torch.randn(1, 1, 8, 8),)
    net(*inputs)
    path = export_onnx(net.eval(), inputs, ("x",), tmp_path / "m.onnx")
    ctx = ServeContext(("x",), inputs, threads, {})
    sess, used, note = fastest_threads(path, ctx, fold_weights=False)
    assert used == sess.get_session_options().intra_op_num_threads
    assert used == (1 if note else threads)
    assert note is None or note.startswith("onnxruntime serves this model on 1 intra-op thread")
    with torch.inference_mode():
        want = net(*inputs)
    got = torch.from_numpy(sess.run(None, {"x": inputs[0].numpy()})[0])
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_eager_keeps_the_thread_count_that_measured_faster_and_says_so(tmp_path, threads):
    net = slimkit.build_model("small-cnn", num_classes=4, in_channels=1, width=4, depth=2)
    before = torch.get_num_threads()
    prepared = prepare(
        ModelState(net, "eager"),
        tmp_path / "m",
        input_names=("pixels",),
        sample_inputs=(torch.zeros(1, 1, 8, 8),),
        threads=threads,
        arch={"source": "small-cnn", "kwargs": {"num_classes": 4, "width": 4, "depth": 2}},
    )
    assert prepared.threads == (1 if prepared.notes else threads)
    assert all(n.startswith("eager serves this model on 1 intra-op thread") for n in prepared.notes)
    assert torch.get_num_threads() == before  # choosing leaves the process as it was


def test_interleaved_timing_runs_each_engine_on_its_own_threads():
    seen: dict[str, set[int]] = {"one": set(), "default": set()}

    def engine(name):
        return lambda _inputs: seen[name].add(torch.get_num_threads())

    before = torch.get_num_threads()
    measure_latency(
        {"one": engine("one"), "default": engine("default")},
        (torch.zeros(1),),
        warmup=1,
        rounds=4,
        per_round=2,
        threads={"one": 1},
    )
    assert seen == {"one": {1}, "default": {before}}
    assert torch.get_num_threads() == before
