"""What ``slimkit auto`` may try: recipe steps drawn from an Optuna trial, per model family.

A search space turns a trial into recipe steps (validated, as a user's YAML would be), so the
chosen trial *is* a recipe that ``slimkit run`` reproduces. Families differ in what shrinks
them: channels or a shallow student for convolutional nets; vocabulary, layers, heads and FFN
neurons for transformers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from slimkit.data.bundle import Inputs
from slimkit.pruning.sensitivity import LayerSensitivity, allocate
from slimkit.pruning.structured import group_leaders
from slimkit.recipe import StepSpec, step
from slimkit.registry import Registry

Steps = list[StepSpec]


@dataclass(frozen=True)
class SpaceInputs:
    """What a space needs besides the trial: training settings, backends, sensitive layers."""

    finetune: dict[str, Any]  # TrainConfig fields for recovery training
    train: dict[str, Any]  # TrainConfig fields of the baseline, for a student (a new model)
    quantize: tuple[str, ...]  # "mode@backend" options, "none" included
    sensitive: tuple[str, ...]  # layers, most sensitive first
    curves: tuple[LayerSensitivity, ...] = ()  # the sensitivity of those layers
    depth: int = 0  # transformer layers (0 for other families)
    vocab: bool = False  # the model has a token table to trim
    heads_and_ffn: bool = False  # its family says where heads and FFN neurons are
    image_size: tuple[int, int] | None = None  # (height, width) of image inputs
    macs: int = 0  # the baseline's multiply-accumulates per example
    blocks: int = 0  # residual blocks the shallowest student would drop (CNNs)
    resizable: bool = False  # the network runs on images smaller than the data's


def every_layer(model: nn.Module, example_inputs: Inputs, sizes: dict[str, int]) -> dict[str, int]:
    """Every Conv2d and Linear with its size: what a space measures by default."""
    return sizes


def no_layer(model: nn.Module, example_inputs: Inputs, sizes: dict[str, int]) -> dict[str, int]:
    """None: for a space whose choices do not depend on per-layer sensitivity."""
    return {}


def channel_groups(
    model: nn.Module, example_inputs: Inputs, sizes: dict[str, int]
) -> dict[str, int]:
    """One convolution per channel group (a share given to any layer of a group is the
    group's), or every convolution where torch-pruning cannot trace the model: its
    channel-pruning trials then fail alone, with their message, instead of the whole search."""
    try:
        return group_leaders(model, example_inputs, sizes)
    except Exception:  # tracing failures surface as many exception types
        convolutions = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
        return {n: size for n, size in sizes.items() if n in convolutions}


@dataclass(frozen=True)
class Space:
    """A family's search space: ``draw`` turns a trial into steps; ``corner`` names the choices
    of its most compressed model, which the search tries first. A generous budget is then met
    by the first trial, and where it is not, the sampler learns from the start where accuracy
    gives out instead of spending its random start-up trials near the baseline.

    ``quantize`` lists, per quantization backend, the modes its trials may end with (they reach
    ``draw`` as :attr:`SpaceInputs.quantize`), the preferred first: the corner takes it.
    ``measures`` names the layers whose pruning sensitivity its trials draw on, each with the
    size its share stands for, given every Conv2d's and Linear's size in the objective's unit
    (they reach ``draw`` as :attr:`SpaceInputs.curves`); the search measures those and no
    others, at a validation pass per layer and ratio.
    """

    draw: Callable[[Any, SpaceInputs], Steps]
    corner: Callable[[SpaceInputs], dict[str, Any]]
    quantize: dict[str, tuple[str, ...]]
    measures: Callable[[nn.Module, Inputs, dict[str, int]], dict[str, int]] = every_layer


SPACES: Registry[Space] = Registry("search space")
# Soft targets at T=2 weighted evenly with the labels: the setting every student and recovery
# of the search distils with.
KD = {"temperature": 2.0, "alpha": 0.5}


def register_space(name: str, space: Space, help: str | None = None) -> Space:
    """Make ``space`` available to ``slimkit auto`` as ``space: name`` (by default the search
    picks ``cnn`` or ``transformer`` from the model)."""
    return SPACES.add(name, space, help)


def family(model: nn.Module) -> str:
    """``transformer`` for a Hugging Face transformer of a known family or any model with a
    stack of transformer layers, else ``cnn``."""
    from slimkit.errors import StepError
    from slimkit.models.families import find_family
    from slimkit.models.surgery import layer_list

    if find_family(model, strict=False) is not None:
        return "transformer"
    try:
        layer_list(model)
        return "transformer"
    except StepError:
        return "cnn"


def depth(model: nn.Module) -> int:
    """How many layers a student may choose from (0 where the layers cannot be dropped: a
    family that reuses one layer across its depth, or no layer stack at all)."""
    from slimkit.errors import StepError
    from slimkit.models.surgery import layer_list

    try:
        return len(layer_list(model)[1])
    except StepError:
        return 0


def _recover(
    trial: Any,
    inputs: SpaceInputs,
    prefix: str,
    student: dict[str, Any] | None = None,
    resolution: float = 1.0,
) -> StepSpec:
    """Fine-tuning after a structural change, distilled from the baseline or from labels, for
    the recovery's epochs or, where the cut went deep, as long as the baseline trained. A
    ``student`` built from the changed model (a shallower one), or one that sees the images at
    a lower ``resolution``, always learns from the baseline."""
    lengths = sorted({inputs.finetune["epochs"], inputs.train.get("epochs", 1)})
    settings = {
        **inputs.finetune,
        "epochs": trial.suggest_categorical(f"{prefix}_epochs", lengths),
    }
    forced = student is not None or resolution < 1
    if forced or trial.suggest_categorical(f"{prefix}_kd", [True, False]):
        config: dict[str, Any] = {"teacher": "baseline", "student": student or {"current": True}}
        if resolution < 1:
            config["resolution"] = resolution
        return step("distill", {**config, "distill": KD, "train": settings})
    return step("finetune", {"train": settings})


INT4_TABLES = "static-int8@openvino"  # the quantization that may keep token tables in 4 bits


def _quantize(trial: Any, inputs: SpaceInputs) -> Steps:
    """The trial's quantization; on a model with a token table, static int8 on OpenVINO may
    store the table in 4 bits: the bulk of a trimmed student's bytes, at the price of unpacking
    the rows it looks up (docs/measurements.md, "Token tables in 4 bits")."""
    choice = trial.suggest_categorical("quantize", list(inputs.quantize))
    if choice == "none":
        return []
    mode, _, backend = choice.partition("@")
    config: dict[str, Any] = {"mode": mode, "backend": backend}
    if inputs.vocab and choice == INT4_TABLES:
        config["int4_embeddings"] = trial.suggest_categorical("int4_embeddings", [True, False])
    return [step("quantize", config)]


# Plain-CNN students (``small-cnn`` width and depth), fewest parameters first. At batch 1 a
# small net's latency is the runtime's per-operator cost, not its MACs, so fewer layers beat
# fewer channels; these four are the ones that stayed within a point of the digits baseline
# (docs/measurements.md, "CNN students").
CNN_STUDENTS = {"w8-d2": (8, 2), "w4-d3": (4, 3), "w6-d3": (6, 3), "w8-d3": (8, 3)}


# Below this many multiply-accumulates per example a network's batch-1 latency is mostly the
# runtime's per-operator cost, which only fewer layers remove, so plain students pay; above it
# arithmetic dominates, and pruning the (often pretrained) network pays while a student trained
# from scratch costs the baseline's whole schedule. The digits net lies well below, Lite0 at
# 224 px well above (docs/measurements.md, "CNN students", "Solar-cell transfer").
SMALL_NET_MACS = 50_000_000


def _students_pay(inputs: SpaceInputs) -> bool:
    """Whether plain students are worth a trial: images, and a network small enough that its
    latency is per-operator cost (:data:`SMALL_NET_MACS`)."""
    return inputs.image_size is not None and inputs.macs <= SMALL_NET_MACS


# How many times the baseline's epochs a plain student distils for. Students pay only on small
# networks (:data:`SMALL_NET_MACS`), where an epoch takes seconds, and the digits student gained
# a fifth of a point from three times the baseline's schedule (docs/measurements.md, "CNN
# students").
STUDENT_EPOCHS = (1, 3)


def _cnn_student(name: str, length: int, inputs: SpaceInputs) -> StepSpec:
    """Distillation from the baseline into a ``small-cnn`` student, trained like the baseline
    for ``length`` times its epochs.

    Its last feature map is pooled to a grid of at most 7 x 7 cells (7 x 7 on 28-pixel images):
    a net this shallow sees a fraction of the image, so the head needs to know where features
    are. It keeps its last epoch, as the baseline's schedule ends where the student has learned
    most; the best validation epoch of a small validation split is often an early, lucky one
    (docs/measurements.md, "CNN students").
    """
    assert inputs.image_size is not None
    width, depth = CNN_STUDENTS[name]
    # each stage after the first halves the map (3x3 convolutions, stride 2, padding 1)
    side = min(math.ceil(s / 2 ** (depth - 1)) for s in inputs.image_size)
    kwargs = {"width": width, "depth": depth, "grid": min(side, 7)}
    epochs = inputs.train.get("epochs", 1) * length
    return step(
        "distill",
        {
            "student": {"model": {"source": "small-cnn", "kwargs": kwargs}},
            "distill": KD,
            "train": {**inputs.train, "epochs": epochs, "keep_best": False},
        },
    )


# Shares of each stage's residual blocks a shallower student keeps (rounded up, so the smallest
# keeps one block a stage). At batch 1 a large network's latency after pruning is still its
# runtime's cost per layer, which only fewer layers remove. On Lite0, with three quarters of the
# channels pruned too, they cost points that twelve epochs of distillation did not win back;
# half the blocks and a quarter of the channels did not (docs/measurements.md).
DEPTHS = (1.0, 0.5, 0.25)

# Shares of each image side a student may see (resized inside it), where the network pools its
# last feature map globally: MobileNet's resolution multiplier. A convolution's MACs fall with
# the square of the side.
RESOLUTIONS = (1.0, 0.875, 0.75, 0.625)


def cnn(trial: Any, inputs: SpaceInputs) -> Steps:
    """A shallow student, or channel pruning and a shallower copy of the network with
    recovery, then quantization.

    On a small network over images a trial may distil the baseline into one of
    :data:`CNN_STUDENTS` instead of pruning it (the student's layers are not the baseline's, so
    pruning rules drawn from the baseline's sensitivity would not apply to it).

    Pruning removes an overall ``ratio`` of channels, spread either uniformly (the most
    sensitive convolutions optionally kept whole) or per layer from the measured sensitivity:
    :func:`~slimkit.pruning.sensitivity.allocate` gives each convolution the share that reaches
    the ratio while losing the least (0, 50% or 80% of it, the levels measured): a ratio of the
    MACs where the search is for speed, of the weights where it is for size.
    Where the network has stages of residual blocks, a trial may keep only a share of each
    (:data:`DEPTHS`): the pruned network's shallower copy, distilled from the baseline. Where
    it takes smaller images, the student may see them at a share of each side
    (:data:`RESOLUTIONS`), also distilled from the baseline, which sees them whole.
    """
    if _students_pay(inputs):
        student = trial.suggest_categorical("student", ["none", *CNN_STUDENTS])
        if student != "none":
            length = trial.suggest_categorical("student_epochs", list(STUDENT_EPOCHS))
            return [_cnn_student(student, length, inputs), *_quantize(trial, inputs)]
    steps: Steps = []
    ratio = trial.suggest_categorical("channels", [0.0, 0.25, 0.5, 0.625, 0.75])
    if ratio:
        prune: dict[str, Any] = {
            "method": "channels",
            "ratio": ratio,
            "importance": trial.suggest_categorical("importance", ["l2", "bn-scale"]),
        }
        spread = trial.suggest_categorical("spread", ["uniform", "sensitivity"])
        if spread == "sensitivity" and inputs.curves:
            prune["overrides"] = allocate(inputs.curves, ratio)
        else:
            keep = trial.suggest_int("keep_sensitive", 0, min(2, len(inputs.sensitive)))
            if keep:
                prune["ignore"] = list(inputs.sensitive[:keep])
        steps.append(step("prune", prune))
    depth = trial.suggest_categorical("depth", list(DEPTHS)) if inputs.blocks else 1.0
    scale = trial.suggest_categorical("resolution", list(RESOLUTIONS)) if inputs.resizable else 1
    if depth < 1 or scale < 1:
        student = {"depth": depth} if depth < 1 else None
        steps.append(_recover(trial, inputs, "channels", student=student, resolution=scale))
    elif ratio:
        steps.append(_recover(trial, inputs, "channels"))
    return steps + _quantize(trial, inputs)


def transformer(trial: Any, inputs: SpaceInputs) -> Steps:
    """Vocabulary trimming, layer dropping by distillation, heads and FFN pruning with
    recovery, quantization."""
    steps: Steps = []
    # The token table is half of MiniLM, and most of a small student; trimming it to the
    # task's tokens costs little accuracy. Where there is a token table, every trial trims it,
    # so the latency objective cannot trade the size away for noise; a trim that does not pay
    # is rolled back (docs/measurements.md, "Transformer search").
    if inputs.vocab:
        min_count = trial.suggest_categorical("vocab_min_count", [1, 3])
        steps.append(step("prune", {"method": "vocab", "min_count": min_count}))
    # A student keeps every k-th layer, the top one included; k divides the depth so the kept
    # layers are evenly spaced (MiniLM-L6: 6, 3, 2 or 1 of them). A student is a new model, not
    # a repaired one: it trains as long as the baseline did, at a searched multiple of its
    # learning rate, since a fresh stack of fewer layers learns better faster.
    divisors = [k for k in range(1, inputs.depth + 1) if inputs.depth % k == 0] or [1]
    keep_every = trial.suggest_categorical("keep_every", divisors)
    if keep_every > 1:
        lr = inputs.train.get("lr", 1e-3) * trial.suggest_categorical("student_lr", [1, 2, 4])
        steps.append(
            step(
                "distill",
                {
                    "student": {"keep_every": keep_every},
                    "distill": KD,
                    "train": {**inputs.train, "lr": lr},
                },
            )
        )
    shares = [0.0, 0.25, 0.5] if inputs.heads_and_ffn else [0.0]
    heads = trial.suggest_categorical("heads", shares)
    ffn = trial.suggest_categorical("ffn", shares)
    if heads:
        steps.append(step("prune", {"method": "heads", "ratio": heads}))
    if ffn:
        steps.append(step("prune", {"method": "ffn", "ratio": ffn}))
    if heads or ffn:
        steps.append(_recover(trial, inputs, "structure"))
    return steps + _quantize(trial, inputs)


# The students' corner stores weights over float kernels, in the fewest bits the space offers.
WEIGHTS_ONLY = ("weight-only-int4@onnxruntime", "weight-only-int8@onnxruntime")


def _int8(inputs: SpaceInputs) -> str:
    """The family's first int8 choice (its preferred mode on the preferred backend)."""
    return next(q for q in inputs.quantize if q != "none")


# A large network's corner stores int8 weights over OpenVINO's float kernels where it may serve
# there: at batch 1 its pruned layers are too narrow for int8 activations to pay, and OpenVINO
# ran them faster than ONNX Runtime (docs/measurements.md, "Shallower students").
LARGE_WEIGHTS_ONLY = "weight-only-int8@openvino"


# The share of each image side a large network's corner sees: on Lite0 the 168-px shallower
# student kept the 224-px baseline's accuracy and ran faster than the same net at 224
# (docs/measurements.md, "Lower-resolution students").
CORNER_RESOLUTION = 0.75


def cnn_corner(inputs: SpaceInputs) -> dict[str, Any]:
    """Where students pay, the smallest, distilled for longest, with its Linear weights in 4 bits
    and its convolutions' in 8, over float kernels (ONNX Runtime's, where it may serve: int8
    activations slowed such a student down at batch 1). Otherwise a large network, distilled
    from the baseline as long as it trained, with int8 weights over float kernels: where it has
    stages of residual blocks, half of each stage's blocks and a quarter of its channels spread
    by sensitivity, seeing the images at :data:`CORNER_RESOLUTION` of each side where it pools
    globally; else three quarters of its channels.

    On Lite0 the shallower corner kept its accuracy and ran faster than three quarters of the
    channels with every block kept, which lost points beyond a budget of one where the
    spread reached a share of MACs (docs/measurements.md, "Solar-cell transfer")."""
    if _students_pay(inputs):
        weights_only = next((q for q in WEIGHTS_ONLY if q in inputs.quantize), None)
        return {
            "student": next(iter(CNN_STUDENTS)),
            "student_epochs": max(STUDENT_EPOCHS),
            "quantize": weights_only or _int8(inputs),
        }
    if inputs.blocks:  # a shallower student always learns from the baseline
        structure: dict[str, Any] = {"channels": 0.25, "depth": 0.5}
        if inputs.resizable:
            structure["resolution"] = CORNER_RESOLUTION
    else:
        structure = {"channels": 0.75, "channels_kd": True}
    return {
        **structure,
        "spread": "sensitivity",
        "importance": "l2",
        "channels_epochs": inputs.train.get("epochs", 1),
        "quantize": LARGE_WEIGHTS_ONLY if LARGE_WEIGHTS_ONLY in inputs.quantize else _int8(inputs),
    }


def transformer_corner(inputs: SpaceInputs) -> dict[str, Any]:
    """A one-layer student on the vocabulary the training data uses, half its attention heads
    and half its FFN neurons pruned and distilled back, in int8 with its token table in 4 bits
    where the backend offers it. Layers are most of a transformer's latency; in the one left,
    the heads (their projections, scores and softmax) and the FFN share the time; the table is
    most of what is left on disk. The corner keeps every token seen, since
    dropping rare ones as well cost a one-layer student most of a point (docs/measurements.md,
    "Transformer search")."""
    corner: dict[str, Any] = {"vocab_min_count": 1} if inputs.vocab else {}
    quantize = _int8(inputs)
    if inputs.vocab and quantize == INT4_TABLES:
        corner["int4_embeddings"] = True
    structure: dict[str, Any] = {}
    if inputs.heads_and_ffn:
        structure = {
            "structure_epochs": inputs.train.get("epochs", 1),
            "structure_kd": True,
        }
    return {
        **corner,
        "keep_every": max(inputs.depth, 1),
        "student_lr": 4,
        "heads": 0.5 if inputs.heads_and_ffn else 0.0,
        "ffn": 0.5 if inputs.heads_and_ffn else 0.0,
        **structure,
        "quantize": quantize,
    }


# CNN trials may also end in int8 or int4 weights over float kernels, which win on layers too
# narrow to fill int8 vector registers (a heavily pruned net at batch 1): as fast as each other,
# int4 half the bytes where it keeps the accuracy. On OpenVINO, bf16 kernels as well, which may
# outrun fp32 ones on CPUs with bf16 instructions (the trial measures).
register_space(
    "cnn",
    Space(
        cnn,
        cnn_corner,
        {
            "onnxruntime": ("static-int8", "weight-only-int8", "weight-only-int4"),
            "torchao": ("static-int8",),
            "openvino": ("static-int8", "weight-only-int8", "bf16"),
        },
        channel_groups,
    ),
    "channel pruning, shallower copies or small students, recovery, quantization",
)
register_space(
    "transformer",
    Space(
        transformer,
        transformer_corner,
        # NNCF's static int8 with its transformer model type first: the fastest plain int8 of
        # MiniLM measured here (docs/measurements.md, "Quantization benchmark")
        {
            "openvino": ("static-int8",),
            "onnxruntime": ("dynamic-int8",),
            "torchao": ("dynamic-int8",),
        },
        no_layer,  # heads, FFN and layers are chosen by share, not by layer
    ),
    "vocabulary trimming, students, heads and FFN pruning, quantization",
)
