"""A Hugging Face directory a user saved with ``save_pretrained`` loads with its own
classification head, as transformers loads it, and a run measures it as the trained model it
is."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.helpers import tiny_models

import slimkit
from slimkit.errors import ModelLoadError
from slimkit.models import ModelSpec, build_model
from slimkit.models.sources import comes_trained


def _tokens() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(2, 60, (2, 9), generator=torch.Generator().manual_seed(0))
    return ids, torch.ones_like(ids)


def test_the_users_head_and_weights_load_as_transformers_loads_them(distilbert_dir: Path):
    from transformers import AutoModelForSequenceClassification

    net = build_model(ModelSpec.parse(f"hf:{distilbert_dir}"), num_classes=3)
    reference = AutoModelForSequenceClassification.from_pretrained(distilbert_dir).eval()
    ids, mask = _tokens()
    want = reference(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(net(ids, mask), want, rtol=0, atol=0)
    # pre_classifier and classifier are the user's own, not a fresh head
    names = {n for n, _ in net.named_parameters()}
    assert {"model.pre_classifier.weight", "model.classifier.weight"} <= names
    assert comes_trained(ModelSpec.parse(f"hf:{distilbert_dir}"))


def test_a_head_for_other_classes_is_named_and_a_new_one_is_an_opt_in(distilbert_dir: Path):
    with pytest.raises(ModelLoadError, match=r"predicts 3 classes, the data has 5.*new_head"):
        build_model(ModelSpec.parse(f"hf:{distilbert_dir}"), num_classes=5)
    spec = ModelSpec.parse({"source": f"hf:{distilbert_dir}", "kwargs": {"new_head": True}})
    net = build_model(spec, num_classes=5)
    assert net(*_tokens()).shape == (2, 5)
    assert not comes_trained(spec)
    with pytest.raises(ModelLoadError, match="takes the kwargs num_classes and new_head"):
        build_model(ModelSpec.parse({"source": f"hf:{distilbert_dir}", "kwargs": {"width": 2}}))


def test_a_run_measures_the_users_classifier_as_trained(
    distilbert_dir: Path, texts: Path, tmp_path: Path
):
    table = texts
    recipe = slimkit.Recipe.from_dict(
        {
            "model": f"hf:{distilbert_dir}",
            "data": {"source": f"csv:{table}", "max_length": 16},
            "evaluation": {"warmup": 1, "rounds": 2, "per_round": 1},
        }
    )
    baseline = slimkit.run(recipe, out=tmp_path / "run").results["steps"][0]
    assert not any("untrained" in note for note in baseline["notes"])
    assert baseline["params"] == sum(
        p.numel() for p in tiny_models().tiny_hf("distilbert").parameters()
    )


def test_slimkit_export_hf_hands_back_a_directory_transformers_and_its_tokenizer_load(
    distilbert_dir: Path, texts: Path, tmp_path: Path, cli
):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "exported"
    data = f"{{source: 'csv:{texts}', max_length: 16}}"  # the recipe's mapping form
    args = ["export", "--model", f"hf:{distilbert_dir}", "--data", data]
    done = cli(*args, "--format", "hf", "--out", str(out))
    assert done.code == 0, done.err
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(["w1 w2 w3", "w4 w59"], padding=True, return_tensors="pt")
    loaded = AutoModelForSequenceClassification.from_pretrained(out).eval()
    net = build_model(ModelSpec.parse(f"hf:{distilbert_dir}"), num_classes=3)
    torch.testing.assert_close(
        loaded(**batch).logits, net(batch["input_ids"], batch["attention_mask"])
    )
    again = cli(*args, "--format", "hf", "--out", str(out))
    assert again.code == 2 and "already exists" in again.err


@pytest.mark.slow
def test_slimkit_auto_searches_a_users_distilbert_without_failed_trials(
    distilbert_dir: Path, texts: Path, tmp_path: Path
):
    """The search draws only steps DistilBERT's family supports: vocabulary trimming, layer-drop
    students, heads and FFN pruning, int8; none of its trials fails."""
    recipe = slimkit.Recipe.from_dict(
        {
            "model": f"hf:{distilbert_dir}",
            "data": {"source": f"csv:{texts}", "max_length": 16},
            "baseline": {"train": {"epochs": 1, "batch_size": 16}},
            "evaluation": {"warmup": 1, "rounds": 2, "per_round": 1},
        }
    )
    result = slimkit.auto(recipe, slimkit.AutoConfig(trials=2, max_accuracy_drop=100))
    trials = result.results["search"]["trials"]
    assert len(trials) == 2 and all(t["state"] != "FAIL" for t in trials), trials
    kinds = {kind for t in trials for step in t.get("steps", []) for kind in step if kind != "name"}
    assert {"prune", "distill"} <= kinds  # the corner: a trimmed vocabulary, a one-layer student


@pytest.mark.slow
def test_a_users_distilbert_goes_through_heads_ffn_distillation_and_int8_with_its_head(
    distilbert_dir: Path, texts: Path, tmp_path: Path
):
    """The recipe the shipped MiniLM recipes follow, on another family: its own trained head
    is measured as the baseline and kept through every step."""
    recipe = slimkit.Recipe.from_dict(
        {
            "model": f"hf:{distilbert_dir}",
            "data": {"source": f"csv:{texts}", "max_length": 16},
            "evaluation": {"warmup": 1, "rounds": 2, "per_round": 1},
            "steps": [
                {"prune": {"method": "heads", "ratio": 0.5}},
                {"prune": {"method": "ffn", "ratio": 0.5}},
                {
                    "distill": {
                        "teacher": "baseline",
                        "student": {"current": True},
                        "epochs": 1,
                        "batch_size": 16,
                        "lr": 0.0001,
                    }
                },
                {"quantize": {"mode": "dynamic-int8", "recover": False}},
            ],
        }
    )
    result = slimkit.run(recipe, out=tmp_path / "run")
    base, heads, ffn, distilled, int8 = result.results["steps"]
    assert not any("untrained" in note for note in base["notes"])
    assert base["macs"] > heads["macs"] > ffn["macs"] == distilled["macs"] == int8["macs"]
    assert int8["runtime"] == "onnxruntime" and int8["size_bytes"] < ffn["size_bytes"] / 2
    # the user's head went through every step: its weights are in the distilled student
    student = build_model(ModelSpec.parse(str(tmp_path / "run" / distilled["artifact"])))
    names = {n for n, _ in student.named_parameters()}
    assert {"model.pre_classifier.weight", "model.classifier.weight"} <= names
