"""Pruning: exact sparsities, and structured pruning that really shrinks the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.helpers import tiny_recipe
from torch import nn

import slimkit
from slimkit.errors import StepError
from slimkit.evaluation.macs import layer_macs
from slimkit.models import ModelSpec, build_model
from slimkit.pruning import ChannelConfig, MagnitudeConfig, NMConfig, RandomConfig, prune
from slimkit.pruning.structured import group_leaders


def _zeros(t: torch.Tensor) -> int:
    return int((t == 0).sum())


def test_global_magnitude_hits_the_exact_sparsity_where_weights_are_smallest():
    net = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 10))
    with torch.no_grad():
        net[0].weight.copy_(torch.arange(100.0).view(10, 10) + 1)  # 1..100
        net[1].weight.copy_(torch.arange(100.0).view(10, 10) + 101)  # 101..200
    net = prune(net, MagnitudeConfig(sparsity=0.25))
    # the 50 smallest of 200 are all in the first layer
    assert _zeros(net[0].weight) == 50 and _zeros(net[1].weight) == 0
    assert float(net[0].weight[5, 0]) == 51.0  # the first kept value


def test_layer_scope_prunes_each_layer_equally():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 20), nn.Linear(20, 5))
    net = prune(net, MagnitudeConfig(sparsity=0.3, scope="layer"))
    assert _zeros(net[0].weight) == 60 and _zeros(net[1].weight) == 30
    assert _zeros(net[0].bias) == 0


def test_ignore_and_targets_select_layers_by_type_name_or_regex():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    net = prune(net, MagnitudeConfig(sparsity=0.5, scope="layer", ignore=("re:2",)))
    assert _zeros(net[0].weight) == 18 and _zeros(net[2].weight) == 0
    net = prune(net, MagnitudeConfig(sparsity=0.5, scope="layer", targets=("Linear",)))
    assert _zeros(net[2].weight) == 4


def test_magnitude_without_matching_layers_is_an_error():
    with pytest.raises(StepError, match="found no layers matching targets"):
        prune(nn.Sequential(nn.ReLU()), MagnitudeConfig(sparsity=0.5))


def test_channel_pruning_shrinks_every_stage_and_keeps_the_classes():
    net = slimkit.build_model("resnet-mini", num_classes=10, in_channels=1)
    x = torch.randn(2, 1, 28, 28)
    net = prune(net, ChannelConfig(ratio=0.5), (x[:1],))
    assert [
        net.stem[0].out_channels,
        net.layers[1].conv1.out_channels,
        net.layers[2].conv2.out_channels,
    ] == [8, 16, 32]
    assert net.head.in_features == 32 and net.head.out_features == 10
    assert net(x).shape == (2, 10)
    # residual adds forced conv2 and the shortcut of each block to keep the same channels
    assert net.layers[1].shortcut[0].out_channels == net.layers[1].conv2.out_channels


def test_channel_overrides_give_the_groups_those_layers_lead_their_own_share():
    net = slimkit.build_model("resnet-mini", num_classes=10, in_channels=1)
    x = torch.randn(2, 1, 28, 28)
    # stem.0 leads the first stage's residual group; layers.2.conv1 only its own block
    config = ChannelConfig(ratio=0.5, overrides={"stem.0": 0.0, "layers.2.conv1": 0.75})
    net = prune(net, config, (x[:1],))
    widths = [net.stem[0].out_channels, net.layers[0].conv1.out_channels]
    widths += [net.layers[2].conv1.out_channels, net.layers[2].conv2.out_channels]
    assert widths == [16, 8, 16, 32]
    assert net(x).shape == (2, 10)


def test_each_channel_group_has_one_leader_standing_for_the_filters_it_removes():
    net = slimkit.build_model("efficientnet-lite0", num_classes=4, in_channels=1, pretrained=False)
    leaders = group_leaders(net, (torch.randn(1, 1, 64, 64),))
    # a group per depthwise convolution with the layer feeding it (16: the first block's is fed
    # by the stem), per stage's residual stream (7), and the head convolution's
    assert len(leaders) == 16 + 7 + 1
    convs = {n: m for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    assert sum(leaders.values()) == sum(m.weight.numel() for m in convs.values())
    # in MACs the same groups partition the convolutions' arithmetic, and the first, at the
    # highest resolution, weighs far more than its weights say
    macs = layer_macs(net, (torch.randn(1, 1, 64, 64),))
    by_macs = group_leaders(net, (torch.randn(1, 1, 64, 64),), macs)
    assert by_macs.keys() == leaders.keys()
    assert sum(by_macs.values()) == sum(macs[n] for n in convs)
    first = "blocks.0.depthwise.1"  # with the stem it follows
    share = leaders[first] / sum(leaders.values())
    assert by_macs[first] / sum(by_macs.values()) > 10 * share
    # a share given to any layer of a group is the group's
    x = torch.randn(1, 1, 64, 64)
    shares = [{"blocks.3.depthwise.1": 0.5}, {"blocks.3.expand.0": 0.5}]
    widths = [prune(net, ChannelConfig(ratio=0.25, overrides=o), (x,)) for o in shares]
    assert [w.blocks[3].expand[0].out_channels for w in widths] == [72, 72]  # 144 halved


def test_channel_pruning_round_to():
    net = slimkit.build_model("small-cnn", num_classes=3, in_channels=1, width=12, depth=2)
    net = prune(net, ChannelConfig(ratio=0.5, round_to=4), (torch.randn(1, 1, 16, 16),))
    assert net.features[0][0].out_channels % 4 == 0
    assert net.features[1][0].out_channels % 4 == 0


def test_channel_pruning_needs_convolutions():
    with pytest.raises(StepError, match="needs convolutional layers"):
        prune(
            nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)),
            ChannelConfig(ratio=0.5),
            (torch.randn(1, 4),),
        )


def test_overrides_give_matching_layers_their_own_sparsity():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 20), nn.Linear(20, 10), nn.Linear(10, 5))
    net = prune(
        net, MagnitudeConfig(sparsity=0.5, scope="layer", overrides={"re:2": 0.2, "0": 0.9})
    )
    assert [_zeros(net[i].weight) for i in range(3)] == [180, 100, 10]


def test_random_baseline_hits_the_sparsity_and_is_seeded():
    def pruned(seed: int) -> torch.Tensor:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(10, 10))
        net = prune(net, RandomConfig(sparsity=0.3, seed=seed))
        return net[0].weight.detach().clone()

    a, b, c = pruned(1), pruned(1), pruned(2)
    assert _zeros(a) == 30 and torch.equal(a, b) and not torch.equal(a, c)


def test_two_four_keeps_the_two_largest_of_every_four_inputs():
    lin = nn.Linear(8, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(
            torch.tensor([[1.0, -4, 3, 2, 0.5, 0.1, -0.2, 9], [5.0, 6, 7, 8, -1, -2, -3, -4]])
        )
    lin = prune(nn.Sequential(lin), NMConfig())[0]
    assert lin.weight.tolist() == [[0.0, -4, 3, 0, 0.5, 0, 0, 9], [0.0, 0, 7, 8, 0, 0, -3, -4]]


def test_n_m_on_convolutions_groups_input_channels_at_each_position():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 3, 3, bias=False)
    conv = prune(nn.Sequential(conv), NMConfig(n=1, m=4, targets=("Conv2d",)))[0]
    per_position = (conv.weight != 0).reshape(3, 2, 4, 3, 3).sum(dim=2)  # out, group, kh, kw
    assert bool((per_position == 1).all())


def test_n_m_leaves_layers_it_cannot_group_dense_and_refuses_when_none_fit():
    net = prune(nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 2)), NMConfig())
    assert _zeros(net[0].weight) == 12 and _zeros(net[1].weight) == 0
    with pytest.raises(StepError, match=r"multiple of m=4 \(0 are not\)"):
        prune(nn.Sequential(nn.Linear(6, 2)), NMConfig())


def test_two_four_on_a_cnn_prunes_its_convolutions_and_names_what_stays_dense(
    blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path
):
    """2:4 on a CNN zeroed only the Linear head (640 of 467,178 weights) and said nothing."""
    recipe = tiny_recipe(blobs_npz, steps=[{"prune": {"method": "n:m"}}])
    result = slimkit.run(slimkit.Recipe.from_dict(recipe), out=tmp_path / "run")
    prune_step = result.results["steps"][1]
    net = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), width=8)
    conv_and_linear = sum(
        m.weight.numel() for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)
    )
    stem = net[0].weight.numel()  # 1 input channel: not a multiple of 4, left dense
    zeroed = prune_step["params"] - prune_step["nonzero_params"]
    assert zeroed == (conv_and_linear - stem) // 2
    assert "left dense, input size not a multiple of m=4: 0" in prune_step["notes"]


def test_a_step_far_below_its_nominal_sparsity_says_so():
    from slimkit.pruning.step import sparsity_notes

    net = nn.Sequential(nn.Conv2d(8, 64, 3), nn.Flatten(), nn.LazyLinear(4))
    net(torch.randn(1, 8, 5, 5))
    config = NMConfig(targets=("Linear",))
    notes = sparsity_notes(prune(net, config), config)
    assert len(notes) == 1 and "far below the nominal 50%: still dense are 0" in notes[0]


@pytest.mark.parametrize("importance", ["bn-scale", "taylor", "l1", "random"])
def test_every_channel_importance_shrinks_the_net(importance: str):
    torch.manual_seed(0)
    net = slimkit.build_model("small-cnn", num_classes=3, in_channels=1, width=8, depth=2)
    batches = [((torch.randn(4, 1, 12, 12),), torch.randint(0, 3, (4,))) for _ in range(2)]
    net = prune(
        net,
        ChannelConfig(ratio=0.5, importance=importance),
        (torch.randn(1, 1, 12, 12),),
        batches=iter(batches),
    )
    assert [net.features[0][0].out_channels, net.features[1][0].out_channels] == [4, 8]
    assert all(p.grad is None for p in net.parameters())


def test_bn_scale_removes_the_channels_with_the_smallest_gammas():
    net = slimkit.build_model("small-cnn", num_classes=3, in_channels=1, width=4, depth=1)
    with torch.no_grad():
        net.features[0][1].weight.copy_(torch.tensor([0.01, 5.0, 0.02, 3.0]))
        net.features[0][0].weight[1].fill_(1.0)
    net = prune(net, ChannelConfig(ratio=0.5, importance="bn-scale"), (torch.randn(1, 1, 8, 8),))
    assert net.features[0][1].weight.tolist() == [5.0, 3.0]
    assert bool((net.features[0][0].weight[0] == 1.0).all())


def test_iterative_rounds_fine_tune_in_between():
    net = slimkit.build_model("small-cnn", num_classes=3, in_channels=1, width=8, depth=2)
    widths: list[int] = []
    config = ChannelConfig(ratio=0.5, iterations=2, finetune={"epochs": 1})
    net = prune(
        net,
        config,
        (torch.randn(1, 1, 8, 8),),
        between=lambda m: widths.append(m.features[0][0].out_channels),
    )
    assert widths == [6] and net.features[0][0].out_channels == 4


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ChannelConfig(ratio=0.5, importance="taylor"), "channels pruning needs batches"),
        (ChannelConfig(ratio=0.5, iterations=3, finetune={"epochs": 1}), "needs between"),
    ],
)
def test_structured_options_without_what_they_need(config, message):
    net = slimkit.build_model("small-cnn", num_classes=3, in_channels=1)
    with pytest.raises(StepError, match=message):
        net = prune(net, config, (torch.randn(1, 1, 8, 8),))


def test_iterations_without_finetuning_are_a_config_error():
    from slimkit.errors import RecipeError

    with pytest.raises(RecipeError, match="iterations > 1 prunes, fine-tunes and repeats"):
        ChannelConfig.from_dict({"method": "channels", "ratio": 0.5, "iterations": 2})


def test_pruning_never_modifies_the_input_model():
    net = slimkit.build_model("resnet-mini", num_classes=10, in_channels=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    pruned = prune(net, ChannelConfig(ratio=0.5), (torch.randn(1, 1, 28, 28),))
    assert pruned is not net and pruned.stem[0].out_channels == 8
    assert net.stem[0].out_channels == 16
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            MagnitudeConfig(sparsity=0.5, ignore=("layers.9.conv1",)),
            r"ignore names layer 'layers\.9\.conv1'.*Did you mean",
        ),
        (
            MagnitudeConfig(sparsity=0.5, targets=("Conv3d",)),
            r"found no layers matching targets \['Conv3d'\]",
        ),
        (
            MagnitudeConfig(sparsity=0.5, overrides={"hed": 0.1}),
            r"overrides names layer 'hed'.*Did you mean 'head'",
        ),
        (
            ChannelConfig(ratio=0.5, overrides={"layers.2.conv": 0.1}),
            r"overrides names layer 'layers\.2\.conv'.*Did you mean",
        ),
        (
            ChannelConfig(ratio=0.5, round_to=32),
            r"Layer 'stem\.0' has 16 channels; round_to=32 would leave it none",
        ),
    ],
)
def test_bad_layer_names_and_impossible_widths_are_named(config, message):
    net = slimkit.build_model("resnet-mini", num_classes=10, in_channels=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(StepError, match=message):
        prune(net, config, (torch.randn(1, 1, 28, 28),))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_an_untraceable_model_is_a_clear_error():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            y = self.conv(x)
            if float(y.sum()) > 0:  # python control flow on values
                y = y.flip(1)
            return self.head(y.mean(dim=(2, 3)))

    net = DataDependent()
    try:
        pruned = prune(net, ChannelConfig(ratio=0.5), (torch.randn(1, 1, 8, 8),))
    except StepError as err:
        assert "torch-pruning cannot trace DataDependent" in str(err)
    else:  # torch-pruning traced this one after all: the result must still run
        assert pruned(torch.randn(2, 1, 8, 8)).shape == (2, 2)
    assert net.conv.out_channels == 4
