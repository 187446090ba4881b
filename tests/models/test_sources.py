"""Model sources: every accepted form builds the right network with the right weights."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import slimkit
from slimkit.errors import ModelLoadError, UnsafeCheckpointError
from slimkit.models import ModelSpec, arch_of, build_model, save_model
from slimkit.models.persist import layer_manifest
from slimkit.pruning import ChannelConfig, prune


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_builtin_nets_have_the_hand_computed_size():
    # resnet-mini, width 16, 1 block per stage, 10 classes:
    # stem 1*16*9 + bn 32 | block 16: 2*(16*16*9) + 2*32 | block 32: 16*32*9 + 32*32*9 + 2*64
    # + shortcut 16*32 + 64 | block 64: 32*64*9 + 64*64*9 + 2*128 + shortcut 32*64 + 128 | head 64*10+10
    expected = (
        (144 + 32)
        + (4608 + 64)
        + (4608 + 9216 + 128 + 512 + 64)
        + (18432 + 36864 + 256 + 2048 + 128)
        + 650
    )
    assert (
        _params(slimkit.build_model("resnet-mini", num_classes=10, in_channels=1))
        == expected
        == 77754
    )
    cnn = slimkit.build_model("small-cnn", num_classes=10, in_channels=3, width=8, depth=2)
    assert _params(cnn) == (3 * 8 * 9 + 16) + (8 * 16 * 9 + 32) + (16 * 10 + 10)


def test_width_and_depth_kwargs_reach_the_factory():
    deep = slimkit.build_model(
        {"source": "resnet-mini", "kwargs": {"width": 8, "depth": 2}}, num_classes=3, in_channels=1
    )
    assert len(deep.layers) == 6 and deep.stem[0].out_channels == 8
    assert deep.head.out_features == 3


def test_import_path_factory_with_kwargs(fixtures_on_path: Path):
    net = build_model(
        ModelSpec.parse({"source": "tiny_models:tiny_cnn", "kwargs": {"width": 6}}),
        num_classes=5,
        in_channels=2,
    )
    assert net[0].in_channels == 2 and net[0].out_channels == 6 and net[-1].out_features == 5


def test_python_file_factory(fixtures_on_path: Path):
    net = build_model(ModelSpec.parse(f"{fixtures_on_path / 'tiny_models.py'}:mlp"))
    assert net[0].in_features == 64


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("resnet-mnii", "Unknown model 'resnet-mnii'. Did you mean 'resnet-mini'?"),
        ("tiny_models:nope", "has no callable 'nope'"),
        ("tiny_models:not_a_factory", "has no callable 'not_a_factory'"),
        ("no_such_pkg.mod:make", "Cannot import 'no_such_pkg.mod'"),
        ("missing.safetensors", "does not exist"),
        ("hf:/nonexistent/dir", "does not exist"),
    ],
)
def test_bad_sources_are_named(source: str, message: str, fixtures_on_path: Path):
    with pytest.raises(
        ModelLoadError, match=message.replace("(", r"\(").replace("?", r"\?").replace(".", r"\.")
    ):
        build_model(ModelSpec.parse(source))


def test_wrong_kwargs_are_named():
    with pytest.raises(ModelLoadError, match=r"Cannot build model 'resnet-mini'.*colour"):
        build_model(ModelSpec.parse({"source": "resnet-mini", "kwargs": {"colour": "red"}}))


@pytest.mark.parametrize(
    ("source", "kwargs", "named"),
    [("small-cnn", {"grid": 0}, "grid"), ("resnet-mini", {"width": 0}, "width")],
)
def test_a_built_in_net_with_a_size_below_one_is_refused_by_name(source, kwargs, named):
    with pytest.raises(ModelLoadError, match=rf"Cannot build model '{source}'.*{named} must be"):
        build_model(ModelSpec.parse({"source": source, "kwargs": kwargs}))


def test_saved_model_round_trips_exactly(tmp_path: Path):
    spec = ModelSpec.parse("resnet-mini")
    net = build_model(spec, num_classes=10, in_channels=1)
    path = save_model(
        net, tmp_path / "m.safetensors", arch_of(spec, {"num_classes": 10, "in_channels": 1})
    )
    again = build_model(ModelSpec.parse(str(path)))
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(net(x), again(x))


def test_channel_pruned_model_round_trips_from_its_manifest(tmp_path: Path):
    spec = ModelSpec.parse("resnet-mini")
    net = build_model(spec, num_classes=10, in_channels=1)
    net = prune(net, ChannelConfig(ratio=0.5), (torch.randn(1, 1, 28, 28),))
    assert net.stem[0].out_channels == 8
    path = save_model(
        net, tmp_path / "pruned.safetensors", arch_of(spec, {"num_classes": 10, "in_channels": 1})
    )
    again = build_model(ModelSpec.parse(str(path)))
    assert layer_manifest(again) == layer_manifest(net)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(net.eval()(x), again(x))
    assert _params(again) == _params(net) < 77754 / 3


def test_weights_from_safetensors_and_checkpoint(tmp_path: Path):
    net = slimkit.build_model("small-cnn", num_classes=4, in_channels=1)
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": net.state_dict()}, tmp_path / "w.pt")
    x = torch.randn(2, 1, 16, 16)
    for weights in ("w.safetensors", "w.pt"):
        loaded = slimkit.build_model(
            {"source": "small-cnn", "weights": str(tmp_path / weights)},
            num_classes=4,
            in_channels=1,
        )
        assert torch.equal(loaded(x), net.eval()(x))


def test_weights_that_do_not_fit_name_the_tensors(tmp_path: Path):
    net = slimkit.build_model("small-cnn", num_classes=4, in_channels=1)
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    with pytest.raises(
        ModelLoadError, match=r"shape mismatch .*head\.weight \(4, 64\) vs \(7, 64\)"
    ):
        slimkit.build_model(
            {"source": "small-cnn", "weights": str(tmp_path / "w.safetensors")},
            num_classes=7,
            in_channels=1,
        )


def test_plain_safetensors_as_source_asks_for_the_architecture(tmp_path: Path):
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ModelLoadError, match=r"holds weights but no architecture.*weights:"):
        slimkit.build_model(str(tmp_path / "plain.safetensors"))


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {Path.cwd() / 'pwned'}",))


def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path: Path):
    path = tmp_path / "evil.pt"
    with path.open("wb") as f:
        pickle.dump({"weight": _Payload()}, f)
    with pytest.raises(UnsafeCheckpointError, match="unpickle arbitrary Python objects"):
        slimkit.build_model({"source": "small-cnn", "weights": str(path)})
    assert not (tmp_path / "pwned").exists()


def test_corrupt_files_are_reported(tmp_path: Path):
    (tmp_path / "junk.safetensors").write_bytes(b"\x00\x01 not safetensors")
    (tmp_path / "junk.pt").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="not a readable safetensors file"):
        slimkit.build_model(str(tmp_path / "junk.safetensors"))
    with pytest.raises(ModelLoadError, match="not a readable PyTorch checkpoint"):
        slimkit.build_model({"source": "small-cnn", "weights": str(tmp_path / "junk.pt")})


@pytest.mark.slow
def test_minilm_loads_pretrained_from_the_package_and_by_hf_dir():
    from slimkit.models import load_tokenizer_for
    from slimkit.models.text import minilm_dir

    net = slimkit.build_model("minilm-l6", num_classes=5)
    assert _params(net) == 22_713_216 + 384 * 5 + 5  # the encoder's published size plus the head
    tok = load_tokenizer_for(ModelSpec.parse("minilm-l6"))
    enc = tok(["slimkit makes models small"], return_tensors="pt")
    emb = net.forward_features(enc["input_ids"], enc["attention_mask"])
    assert emb.shape == (1, 384) and float(emb.abs().sum()) > 0
    by_dir = slimkit.build_model(f"hf:{minilm_dir()}", num_classes=5)
    assert torch.equal(by_dir.forward_features(enc["input_ids"], enc["attention_mask"]), emb)


def test_a_factory_taking_kwargs_gets_no_hint_it_does_not_name(fixtures_on_path: Path):
    """slimkit passed num_classes/in_channels into **kw, which StrictNet refused."""
    spec = {"source": "tiny_models:strict_kwargs", "kwargs": {"in_ch": 1, "width": 8}}
    net = build_model(ModelSpec.parse(spec), num_classes=5, in_channels=1)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 3)  # StrictNet's own default, n_out=3
    assert arch_of(ModelSpec.parse(spec), {"num_classes": 5}).kwargs == spec["kwargs"]


def test_a_recipe_maps_or_drops_data_hints(fixtures_on_path: Path):
    mapped = {"source": "tiny_models:strict_kwargs", "hints": {"num_classes": "n_out"}}
    net = build_model(ModelSpec.parse(mapped), num_classes=5, in_channels=1)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 5)
    dropped = {"source": "tiny_models:tiny_cnn", "hints": {"num_classes": None}}
    net = build_model(ModelSpec.parse(dropped), num_classes=5, in_channels=1)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 3)  # tiny_cnn's default


def test_hint_mistakes_are_named(fixtures_on_path: Path):
    wrong = {"source": "tiny_models:tiny_cnn", "hints": {"num_classes": "n_out"}}
    with pytest.raises(ModelLoadError, match=r"maps num_classes to 'n_out', but .* takes no"):
        build_model(ModelSpec.parse(wrong), num_classes=5)
    with pytest.raises(Exception, match="unknown data hint 'classes'"):
        ModelSpec.parse({"source": "resnet-mini", "hints": {"classes": "n"}})
    # a hint the factory names but cannot take: the message says how to rename or drop it
    with pytest.raises(ModelLoadError, match=r"data hints num_classes .* model\.hints"):
        build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=-1)
