"""The recipe schema: strict keys, typed values, messages that name the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import slimkit  # noqa: F401  (registers the step types)
from slimkit.errors import RecipeError
from slimkit.pruning import PRUNE_METHODS
from slimkit.quantization import QUANT_MODES
from slimkit.recipe import Recipe
from slimkit.steps import STEPS
from slimkit.training.step import FinetuneConfig

RECIPES = Path(__file__).parents[1] / "src" / "slimkit" / "recipes"

MINIMAL = {"model": "resnet-mini", "data": "mnist5k"}

# One valid instance of every registered config, so each is round-tripped.
EXAMPLES = {
    "magnitude": {
        "method": "magnitude",
        "sparsity": 0.8,
        "scope": "layer",
        "ignore": ["re:head.*"],
    },
    "channels": {"method": "channels", "ratio": 0.3, "importance": "l1", "round_to": 4},
    "random": {"method": "random", "sparsity": 0.5, "seed": 3},
    "n:m": {"method": "n:m", "n": 1, "m": 4, "targets": ["Linear", "Conv2d"]},
    "heads": {"method": "heads", "ratio": 0.25, "importance": "l1"},
    "ffn": {"method": "ffn", "ratio": 0.4, "round_to": 64},
    "vocab": {"method": "vocab", "min_count": 2, "unk_token": 100},
    "static-int8": {"mode": "static-int8", "estimator": "percentile", "percentile": 99.9},
    "dynamic-int8": {"mode": "dynamic-int8", "per_channel": True, "backend": "torchao"},
    "weight-only-int8": {"mode": "weight-only-int8", "group_size": 64, "backend": "torchao"},
    "weight-only-int4": {"mode": "weight-only-int4", "group_size": 128},
    "fp16": {"mode": "fp16"},
    "bf16": {"mode": "bf16", "backend": "torch"},
    "qat": {"mode": "qat", "train": {"epochs": 2, "lr": 0.0001}, "max_accuracy_drop": 0.5},
}


def test_every_registered_config_has_an_example():
    assert set(EXAMPLES) == set(PRUNE_METHODS.list()) | set(QUANT_MODES.list())


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_configs_round_trip_through_dict_and_yaml(name: str):
    registry = PRUNE_METHODS if name in PRUNE_METHODS else QUANT_MODES
    cls = registry.get(name)
    config = cls.from_dict(EXAMPLES[name])
    again = cls.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict())))
    assert again == config
    for key, value in EXAMPLES[name].items():
        got = config.to_dict()[key]
        if isinstance(value, dict):  # nested configs gain their defaults
            assert value.items() <= got.items()
        else:
            assert got == (list(value) if isinstance(value, tuple) else value)


# The training-side steps, with their nested configs, round-trip the same way.
STEP_EXAMPLES = {
    "finetune": {
        "epochs": 2,
        "precision": "bf16",
        "regularize": {"bn_l1": 0.001, "group_lasso": 0.01},
        "freeze": ["encoder.embeddings"],
        "unfreeze": "gradual",
        "layer_lr_decay": 0.8,
        "feature_extraction": False,
    },
    "distill": {
        "student": {"keep_layers": [2, 5]},
        "temperature": 2.0,
        "alpha": 1.0,
        "hints": [{"teacher": "a", "student": "b"}],
        "attention": [{"teacher": 5, "student": 1}],
        "cache_teacher": False,
    },
    "transfer": {"checkpoint": "x.safetensors", "by_shape": False, "skip": ["head"]},
}


@pytest.mark.parametrize("kind", sorted(STEP_EXAMPLES))
def test_training_step_configs_round_trip(kind: str):
    parse = STEPS.get(kind).parse
    config = parse(STEP_EXAMPLES[kind], kind)
    again = parse(yaml.safe_load(yaml.safe_dump(config.to_dict())), kind)
    assert again == config


def test_recipe_round_trips_and_fills_defaults():
    recipe = Recipe.from_dict(
        {
            **MINIMAL,
            "steps": [
                {"prune": EXAMPLES["channels"]},
                {"name": "ft", "finetune": {"epochs": 2, "lr": 0.01}},
                {"quantize": EXAMPLES["static-int8"]},
            ],
        }
    )
    assert [s.name for s in recipe.steps] == ["prune", "ft", "quantize"]
    assert recipe.model.source == "resnet-mini" and recipe.data.test_fraction == 0.2
    assert recipe.evaluation.batch_size == 1 and recipe.evaluation.runtime is None
    assert isinstance(recipe.steps[1].config, FinetuneConfig)
    assert recipe.steps[1].config.keep_sparsity is True
    again = Recipe.from_dict(yaml.safe_load(recipe.to_yaml()))
    assert again == recipe


def test_repeated_step_kinds_get_unique_names():
    recipe = Recipe.from_dict({**MINIMAL, "steps": [{"finetune": {}}, {"finetune": {}}]})
    assert [s.name for s in recipe.steps] == ["finetune", "finetune-2"]


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        (
            {**MINIMAL, "stpes": []},
            r"unknown key 'recipe\.stpes'; allowed keys here: baseline, data, evaluation, model, name, seed, steps",
        ),
        ({"data": "mnist5k"}, r"missing required key 'recipe\.model'"),
        (
            {**MINIMAL, "evaluation": {"batch_size": 0}},
            r"'recipe\.evaluation\.batch_size': Input should be greater than or equal to 1",
        ),
        (
            {**MINIMAL, "evaluation": {"runtime": "tensorrt"}},
            r"Unknown runtime 'tensorrt'.*Known: compile, eager, onnxruntime",
        ),
        (
            {**MINIMAL, "baseline": {"train": {"epocs": 3}}},
            r"unknown key 'recipe\.baseline\.train\.epocs'; allowed keys here: .*epochs",
        ),
        (
            {**MINIMAL, "baseline": {"train": {"lr": "fast"}}},
            r"'recipe\.baseline\.train\.lr': Input should be a valid number.*'fast'",
        ),
        ({**MINIMAL, "baseline": {"train": {"augment": ["flip"]}}}, r"Unknown augmentation 'flip'"),
        (
            {**MINIMAL, "steps": [{"prnue": {}}]},
            r"'recipe\.steps\[0\]': Unknown step type 'prnue'\. Did you mean 'prune'\?",
        ),
        (
            {**MINIMAL, "steps": [{"prune": {"method": "magnitude", "sparsity": 1.5}}]},
            r"'recipe\.steps\[0\]\.prune\.sparsity': Input should be less than 1",
        ),
        (
            {
                **MINIMAL,
                "steps": [{"prune": {"method": "magnitude", "sparsity": 0.5, "ratio": 0.5}}],
            },
            r"unknown key 'recipe\.steps\[0\]\.prune\.ratio'; allowed keys here: gradual, ignore, method, overrides, scope, sparsity, targets",
        ),
        (
            {**MINIMAL, "steps": [{"prune": {"method": "filters"}}]},
            r"'recipe\.steps\[0\]\.prune\.method': Unknown pruning method 'filters'",
        ),
        (
            {
                **MINIMAL,
                "steps": [{"prune": {"method": "magnitude", "sparsity": 0.5, "ignore": ["re:(("]}}],
            },
            r"not a valid regex",
        ),
        (
            {**MINIMAL, "steps": [{"quantize": {"mode": "int3"}}]},
            r"Unknown quantization mode 'int3'",
        ),
        (
            {**MINIMAL, "steps": [{"quantize": {"mode": "static-int8"}}, {"finetune": {}}]},
            r"comes after steps\[0\] \(quantize\), whose quantized model cannot be changed further\. Put quantize last",
        ),
        ({**MINIMAL, "steps": [{"prune": {}, "finetune": {}}]}, r"must name exactly one step type"),
        ({**MINIMAL, "steps": ["prune"]}, r"must be a mapping like"),
        ({**MINIMAL, "name": "has space"}, r"'recipe\.name': String should match pattern"),
        ([1, 2], r"A recipe must be a mapping"),
    ],
)
def test_bad_recipes_name_the_problem(recipe, message):
    with pytest.raises(RecipeError, match=message):
        Recipe.from_dict(recipe)


def test_load_reports_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(RecipeError, match="does not exist"):
        Recipe.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        Recipe.load(bad)
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text("model: !!python/object/apply:os.system ['touch pwned']\ndata: mnist5k\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        Recipe.load(tagged)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate(path: Path):
    recipe = Recipe.load(path)
    assert recipe.steps, "a shipped recipe without steps demonstrates nothing"


def test_opt_ins_are_found_and_replaced_wherever_a_recipe_sets_them():
    from slimkit.recipe import steps_opt_in, with_opt_ins

    base = {"name": "r", "model": "resnet-mini", "data": "mnist5k"}
    plain = Recipe.from_dict({**base, "steps": [{"transfer": {"checkpoint": "w.pt"}}]})
    opted = Recipe.from_dict(
        {**base, "steps": [{"transfer": {"checkpoint": "w.pt", "trust_checkpoint": True}}]}
    )
    assert not steps_opt_in(plain) and steps_opt_in(opted)
    reset = with_opt_ins(opted, False, False)
    assert not steps_opt_in(reset) and not reset.model.trust_checkpoint
    assert with_opt_ins(plain, True, False).model.trust_checkpoint


def test_a_recipe_naming_the_runtime_backend_as_older_ones_did_still_loads():
    recipe = Recipe.from_dict({**MINIMAL, "evaluation": {"backend": "onnxruntime"}})
    assert recipe.evaluation.runtime == "onnxruntime"
    assert recipe.to_dict()["evaluation"]["runtime"] == "onnxruntime"
