"""Residual blocks found from each network's forward, over the built-in CNNs and a user's own
block, and shallower students that keep a share of each stage."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from slimkit.distillation.configs import ShallowerStudent
from slimkit.distillation.students import build_student
from slimkit.errors import ModelLoadError, StepError
from slimkit.models import ModelSpec, build_model, save_model
from slimkit.models.arch import Arch
from slimkit.models.blocks import drop_blocks, is_residual, shallower, stages
from slimkit.models.efficientnet import LITE0_STAGES, LITE1_DEPTH, deeper


class UserBlock(nn.Module):
    """A user's residual block written with ``torch.add``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.add(x, torch.relu(self.conv(x)))


def _user_net() -> nn.Module:
    """A user's net: a stem and its activation, two residual blocks, a strided conv, one more
    block, a head."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        UserBlock(4),
        UserBlock(4),
        nn.Conv2d(4, 8, 3, stride=2, padding=1),
        UserBlock(8),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def _lite(name: str) -> nn.Module:
    return build_model(ModelSpec(source=name), num_classes=4, in_channels=1, pretrained=False)


LITE = {
    "efficientnet-lite0": LITE0_STAGES,
    "efficientnet-lite1": deeper(LITE0_STAGES, LITE1_DEPTH),
}


@pytest.mark.parametrize("name", sorted(LITE))
@pytest.mark.parametrize("depth", [0.25, 0.5, 0.75])
def test_each_lite_stage_keeps_its_repeats_rounded_up_as_efficientnet_rounds(name, depth):
    model = _lite(name)
    drop_blocks(model, shallower(model, depth))
    kept = [not isinstance(b, nn.Identity) for b in model.blocks]
    per_stage, start = [], 0
    for *_, repeats in LITE[name]:
        per_stage.append(sum(kept[start : start + repeats]))
        assert kept[start], "every stage keeps the block that changes the shape"
        start += repeats
    assert per_stage == [max(1, math.ceil(depth * s[-1])) for s in LITE[name]]
    assert model(torch.zeros(1, 1, 64, 64)).shape == (1, 4)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: build_model(ModelSpec(source="resnet-mini"), depth=2), [2, 1, 1]),
        (_user_net, [2, 1]),
        (lambda: build_model(ModelSpec(source="small-cnn")), []),
    ],
    ids=["resnet-mini", "user-net", "small-cnn"],
)
def test_residual_stages_are_read_off_the_forward_of_any_network(build, expected):
    assert [len(s.repeats) for s in stages(build())] == expected


def test_a_dropped_block_whose_branch_adds_nothing_changes_no_output():
    torch.manual_seed(0)
    model = _user_net().eval()
    x = torch.randn(2, 1, 8, 8)
    dropped = shallower(model, 0.5)
    assert dropped == ["3", "5"]  # each stage keeps ceil(half) of its blocks: its first first
    with torch.no_grad():
        for name in dropped:
            model.get_submodule(name).conv.weight.zero_()
            model.get_submodule(name).conv.bias.zero_()
        before = model(x)
        drop_blocks(model, dropped)
        assert isinstance(model[3], nn.Identity) and is_residual(model[2])
        torch.testing.assert_close(model(x), before)


def test_an_activation_before_residual_blocks_is_not_a_block_its_stage_keeps():
    # a quarter of the first stage is its first residual block, not the ReLU before it
    assert shallower(_user_net(), 0.25) == ["3", "5"]


def test_shallower_student_keeps_the_teachers_weights_and_reloads_from_its_record(tmp_path: Path):
    teacher = _lite("efficientnet-lite0").eval()
    arch = Arch(source="efficientnet-lite0", kwargs={"num_classes": 4, "in_channels": 1})
    student, student_arch = build_student(teacher, ShallowerStudent(depth=0.25), arch, {})
    assert student_arch.dropped == tuple(f"blocks.{i}" for i in (2, 4, 6, 7, 9, 10, 12, 13, 14))
    assert not any(isinstance(b, nn.Identity) for b in teacher.blocks)  # the teacher is whole
    torch.testing.assert_close(student.blocks[5].state_dict(), teacher.blocks[5].state_dict())
    path = save_model(student, tmp_path / "shallow.safetensors", student_arch)
    again = build_model(ModelSpec.parse(str(path))).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), student.eval()(x))


def test_a_record_naming_a_block_the_network_lacks_is_refused():
    model = build_model(ModelSpec(source="resnet-mini"))
    for name in ("layers.9", "stem", "layers.0.conv1"):
        with pytest.raises(ModelLoadError, match="not a residual block of ResNetMini"):
            drop_blocks(model, [name])


def test_a_net_without_residual_blocks_gets_a_message_naming_other_students():
    arch = Arch(source="small-cnn")
    teacher = build_model(ModelSpec(source="small-cnn"))
    with pytest.raises(StepError, match=r"no stage of residual blocks.*width:"):
        build_student(teacher, ShallowerStudent(depth=0.5), arch, {})
