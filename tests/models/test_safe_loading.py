"""Loading a file never runs code from it unless the user explicitly opts in."""

from __future__ import annotations

import json
import pathlib
from pathlib import Path

import pytest
import torch
from tests.helpers import tiny_recipe

import slimkit
from slimkit.errors import ModelLoadError, UnsafeCheckpointError
from slimkit.models import ModelSpec, build_model
from slimkit.training import checkpoint


class _Payload:
    """Unpickling this calls ``Path.touch(marker)``: proof that the file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture
def malicious(tmp_path: Path, fixtures_on_path: Path) -> tuple[Path, Path]:
    """A checkpoint with real weights plus an object that writes ``marker`` when unpickled."""
    marker = tmp_path / "code-ran"
    net = build_model(ModelSpec.parse("tiny_models:tiny_cnn"))
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": net.state_dict(), "extra": _Payload(marker)}, path)
    assert not marker.exists()
    return path, marker


def test_a_malicious_checkpoint_is_refused_and_its_code_never_runs(
    malicious: tuple[Path, Path], fixtures_on_path: Path
):
    path, marker = malicious
    before = path.read_bytes()
    spec = ModelSpec.parse({"source": "tiny_models:tiny_cnn", "weights": str(path)})
    with pytest.raises(UnsafeCheckpointError, match=r"can run any code.*--trust-checkpoint"):
        build_model(spec)
    assert not marker.exists()
    assert path.read_bytes() == before


def test_the_cli_refuses_it_with_the_opt_in_named(
    malicious: tuple[Path, Path], fixtures_on_path: Path, blobs_npz: Path, cli
):
    path, marker = malicious
    out = cli("eval", "-m", "tiny_models:tiny_cnn", "-d", f"npz:{blobs_npz}", "-w", str(path))
    assert out.code == 2
    assert "--trust-checkpoint" in out.err and "Traceback" not in out.err + out.out
    assert not marker.exists()


def test_transfer_and_training_resume_refuse_it_too(
    malicious: tuple[Path, Path], fixtures_on_path: Path, blobs_npz: Path, tmp_path: Path
):
    path, marker = malicious
    recipe = tiny_recipe(blobs_npz, steps=[{"transfer": {"checkpoint": str(path)}}])
    with pytest.raises(UnsafeCheckpointError):
        slimkit.run(slimkit.Recipe.from_dict(recipe), out=tmp_path / "run")
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / checkpoint.FILE).write_bytes(path.read_bytes())
    with pytest.raises(ModelLoadError, match="Cannot resume"):
        checkpoint.load(folder)
    assert not marker.exists()


def test_a_trusted_pickled_module_loads_when_the_user_opts_in(
    fixtures_on_path: Path, tmp_path: Path
):
    net = build_model(ModelSpec.parse("tiny_models:tiny_cnn"))
    whole = tmp_path / "whole-model.pt"
    torch.save(net, whole)  # a pickled nn.Module: needs full unpickling
    plain = {"source": "tiny_models:tiny_cnn", "weights": str(whole)}
    with pytest.raises(UnsafeCheckpointError):
        build_model(ModelSpec.parse(plain))
    loaded = build_model(ModelSpec.parse({**plain, "trust_checkpoint": True}))
    assert all(
        torch.equal(a, b)
        for a, b in zip(net.state_dict().values(), loaded.state_dict().values(), strict=True)
    )


def test_hugging_face_remote_code_stays_off_unless_trusted(tmp_path: Path, cli):
    folder = tmp_path / "remote"
    folder.mkdir()
    marker = tmp_path / "code-ran"
    auto_map = {"AutoConfig": "configuration_x.XConfig", "AutoModel": "modeling_x.XModel"}
    (folder / "config.json").write_text(json.dumps({"model_type": "x-net", "auto_map": auto_map}))
    for module in ("configuration_x.py", "modeling_x.py"):
        (folder / module).write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    with pytest.raises(ModelLoadError, match="--trust-remote-code"):
        build_model(ModelSpec.parse(f"hf:{folder}"), num_classes=2)
    out = cli("eval", "-m", f"hf:{folder}", "-d", "mnist5k")
    assert out.code == 2 and "Traceback" not in out.err
    assert not marker.exists()
