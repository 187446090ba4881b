"""Lower-resolution students: the resize travels with the network into copies, saved files and
exported graphs, and every layer keeps its name."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from tests.helpers import tiny_recipe
from torch import nn

import slimkit
from slimkit.errors import RecipeError, StepError
from slimkit.export.onnx import export_onnx
from slimkit.models import ModelSpec, build_model, save_model
from slimkit.models.arch import Arch
from slimkit.models.resolution import (
    bilinear,
    check_resizable,
    input_size,
    resize_inputs,
    runs_smaller,
    scaled_size,
)


def _resnet() -> nn.Module:
    return build_model(ModelSpec(source="resnet-mini", kwargs={"width": 4})).eval()


def test_a_resized_net_computes_what_it_would_on_the_interpolated_images():
    net = _resnet()
    x = torch.randn(2, 1, 28, 28)
    small = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
    with torch.no_grad():
        expected = net(small)
        names = [n for n, _ in net.named_parameters()]
        resize_inputs(net, (20, 20))
        torch.testing.assert_close(net(x), expected)
    assert [n for n, _ in net.named_parameters()] == names
    assert input_size(net) == (20, 20)
    resize_inputs(net, (14, 14))  # replaces the resize, never stacks a second one
    assert input_size(net) == (14, 14) and len(net._forward_pre_hooks) == 1
    assert input_size(copy.deepcopy(net)) == (14, 14)


@pytest.mark.parametrize(
    ("side", "size"),
    [
        ((224, 224), (168, 168)),  # 3/4 in blocks of 4
        ((224, 224), (196, 140)),  # 7/8 and 5/8 in blocks of 8
        ((28, 21), (21, 14)),  # 3/4 and 2/3
        ((30, 30), (17, 17)),  # 17/30: interpolated
        ((12, 12), (12, 6)),  # one side kept whole
    ],
)
def test_the_block_resize_is_the_bilinear_interpolation(side, size):
    x = torch.randn(2, 3, *side)
    expected = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    # PyTorch computes sample positions in float32, the blocks from exact fractions
    torch.testing.assert_close(bilinear(x, size), expected, atol=2e-4, rtol=0)


def test_sides_scale_up_to_whole_pixels():
    assert scaled_size((224, 224), 0.75) == (168, 168)
    assert scaled_size((28, 20), 0.3) == (9, 6)
    assert scaled_size((3, 3), 0.1) == (1, 1)


def test_a_resized_net_reloads_from_its_record_and_exports_its_resize(tmp_path: Path):
    net = _resnet()
    resize_inputs(net, (16, 16))
    arch = Arch(source="resnet-mini", kwargs={"width": 4}, resolution=(16, 16))
    path = save_model(net, tmp_path / "small.safetensors", arch)
    again = build_model(ModelSpec.parse(str(path))).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x))
    graph = export_onnx(net, (x[:1],), ("input",), tmp_path / "small.onnx")
    session = ort.InferenceSession(str(graph))
    assert session.get_inputs()[0].shape[2:] == [28, 28]  # clients send full-size images
    (logits,) = session.run(None, {"input": x.numpy()})
    np.testing.assert_allclose(logits, net(x).detach().numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("side", [0, -3, 100_000])
def test_a_record_with_an_impossible_side_is_not_an_architecture(side):
    assert Arch.parse({"source": "resnet-mini", "resolution": [side, 16]}) is None


def test_a_head_sized_for_one_resolution_gets_a_message_naming_the_fix():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 8 * 8, 3))
    assert not runs_smaller(net, torch.randn(1, 1, 8, 8), 0.75)
    assert runs_smaller(_resnet(), torch.randn(1, 1, 8, 8), 0.75)
    assert input_size(net) is None  # asking did not change it
    resize_inputs(net, (6, 6))
    with pytest.raises(StepError, match=r"resized to \(6, 6\).*pools its last feature map"):
        check_resizable(net, torch.randn(1, 1, 8, 8))
    assert net.training  # the check leaves the mode as it found it


def _distilled_at(scale: float, blobs_npz: Path, tmp_path: Path) -> dict:
    recipe = tiny_recipe(
        blobs_npz,
        model={"source": "resnet-mini", "kwargs": {"width": 8}},
        steps=[
            {
                "distill": {
                    "teacher": "baseline",
                    "student": {"current": True},
                    "resolution": scale,
                    "epochs": 3,
                    "lr": 0.01,
                    "batch_size": 16,
                }
            },
            {"quantize": {"mode": "static-int8", "backend": "onnxruntime"}},
        ],
    )
    return slimkit.run(slimkit.Recipe.from_dict(recipe), out=tmp_path / "run").results


@pytest.mark.slow
def test_a_student_at_a_lower_resolution_learns_from_the_full_size_teacher(
    blobs_npz: Path, tmp_path: Path
):
    base, student, int8 = _distilled_at(0.75, blobs_npz, tmp_path)["steps"]
    assert "sees 6x6 images" in " ".join(student["notes"]), student["notes"]
    assert student["params"] == base["params"]
    assert student["macs"] < 0.75 * base["macs"]  # 36 of 64 pixels first, deeper maps round up
    assert student["accuracy"] >= base["accuracy"] - 5.0
    assert int8["accuracy"] >= student["accuracy"] - 5.0
    reloaded = build_model(ModelSpec.parse(str(tmp_path / "run" / student["artifact"])))
    assert input_size(reloaded) == (6, 6)


def test_a_resolution_of_one_or_more_is_refused_in_the_recipe(blobs_npz: Path, tmp_path: Path):
    with pytest.raises(RecipeError, match="resolution"):
        _distilled_at(1.0, blobs_npz, tmp_path)
