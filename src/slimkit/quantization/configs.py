"""Quantization configs: one frozen config per mode; the ``mode`` key picks it in recipes."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from slimkit.config import Config
from slimkit.distillation.configs import DistillConfig
from slimkit.layers import validate_patterns
from slimkit.registry import Registry
from slimkit.training.config import TrainConfig


class QuantBackend(StrEnum):
    """The library that quantizes, which also decides the runtime that serves the result."""

    ONNXRUNTIME = "onnxruntime"  # served by ONNX Runtime (QDQ int8, MatMulNBits)
    TORCHAO = "torchao"  # quantize_ subclasses or PT2E graphs, served by torch.compile
    TORCH = "torch"  # plain dtype casts, served by PyTorch eager
    OPENVINO = "openvino"  # NNCF int8 / weight compression and bf16, served by OpenVINO (IR)
    AUTO = "auto"  # measure every backend that can run the mode; keep the fastest in budget


class Estimator(StrEnum):
    """How calibration turns observed activations into an int8 range."""

    MINMAX = "minmax"  # the full observed range: no clipping, coarser steps
    PERCENTILE = "percentile"  # clip rare outliers at a percentile of |x|
    ENTROPY = "entropy"  # the range whose int8 histogram loses least information (KL)
    MSE = "mse"  # the range that minimises the squared quantization error


class IntType(StrEnum):
    INT8 = "int8"
    UINT8 = "uint8"


class ModelKind(StrEnum):
    """What a quantizer tunes for (NNCF's ``model_type``): ``transformer`` keeps activations
    asymmetric and applies SmoothQuant; ``auto`` decides from the model."""

    AUTO = "auto"  # a transformer family or token inputs: transformer; otherwise cnn
    TRANSFORMER = "transformer"
    CNN = "cnn"


class Need(StrEnum):
    """What a mode takes from a data set besides traced and held-out examples."""

    CALIBRATION = "calibration"  # batches of inputs to observe activation ranges on
    TRAIN_LOOP = "train_loop"  # training through fake quantization


class QuantizeConfig(Config):
    """Fields shared by every quantization mode.

    ``max_accuracy_drop`` (points, on the validation split) is the budget ``backend: auto``
    chooses within.
    """

    precision: ClassVar[str]  # numeric format of the result: the tolerance exports are verified at
    mode: str
    backend: QuantBackend = Field(
        QuantBackend.ONNXRUNTIME, description="The library that quantizes; auto measures them."
    )
    max_accuracy_drop: float = Field(
        1.0, ge=0.0, le=100.0, description="Points of validation accuracy auto and recovery keep."
    )
    ignore: tuple[str, ...] = Field((), description="Layers to keep in float (names, types, re:).")
    recover: bool = Field(True, description="Climb the recovery ladder when over budget.")

    def needs(self) -> frozenset[Need]:
        """What :func:`slimkit.quantize` must be given for this mode (none by default)."""
        return frozenset()

    def verified_at(self) -> str:
        """The precision whose tolerance the quantized graph is held to: its coarsest."""
        return self.precision

    @field_validator("ignore")
    @classmethod
    def _patterns(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(validate_patterns(v))


QUANT_MODES: Registry[type[QuantizeConfig]] = Registry("quantization mode")


@QUANT_MODES.register("static-int8")
class StaticInt8Config(QuantizeConfig):
    """Post-training int8: weights per-channel symmetric, activation ranges from calibration."""

    mode: Literal["static-int8"] = "static-int8"
    precision: ClassVar[str] = "int8"  # the tolerance its exported graph is verified at
    calibration_samples: int = Field(
        512, ge=1, le=1_000_000, description="Training examples activation ranges come from."
    )
    estimator: Estimator = Field(Estimator.MINMAX, description="How a range is chosen.")

    def needs(self) -> frozenset[Need]:
        return frozenset({Need.CALIBRATION})

    def verified_at(self) -> str:
        return "int4" if self.int4_embeddings else self.precision

    percentile: float = Field(99.999, gt=90.0, le=100.0, description="For estimator percentile.")
    per_channel: bool = Field(True, description="One weight scale per output channel.")
    # None: the backend's fast path, uint8 on both (u8s8 is the VNNI kernel; docs/measurements.md).
    # torchao's x86 quantizer takes uint8 only.
    activations: IntType | None = Field(None, description="uint8 or int8; null: the fast one.")
    # Fewer than 8 bits simulates narrower weights inside int8 storage (PT2E only): the way to
    # see what QAT recovers when 8 bits lose nothing.
    weight_bits: int = Field(8, ge=2, le=8, description="Below 8: narrower weights (torchao).")
    model_type: ModelKind = Field(
        ModelKind.AUTO, description="What the quantizer tunes for (openvino's NNCF)."
    )
    # A trimmed student's token table is most of its bytes; unpacking looked-up rows costs time.
    int4_embeddings: bool = Field(
        False, description="Token tables in 4 bits, groups of up to 128 (openvino's NNCF)."
    )

    @model_validator(mode="after")
    def _backend_supports_options(self) -> StaticInt8Config:
        """Checked against the backend's row of the capability table (``auto``: any row)."""
        from slimkit.quantization.backends import CAPABILITIES, offering, words

        caps = CAPABILITIES.get(self.backend)
        if caps is None or self.mode not in caps.handlers:  # auto, or refused by mode later
            return self
        if self.estimator not in caps.estimators:
            elsewhere = words(offering("estimators", self.estimator))
            raise ValueError(
                f"estimator {self.estimator} runs on {elsewhere}; "
                f"{caps.label} offers {words(caps.estimators)}"
            )
        if self.activations is not None and self.activations not in caps.activations:
            raise ValueError(f"{caps.label} uses {words(caps.activations)} activations only")
        if not self.per_channel and not caps.per_tensor_weights:
            raise ValueError(f"{caps.label} quantizes weights per channel")
        if self.model_type is not ModelKind.AUTO and not caps.model_types:
            tuned = [c.label for c in CAPABILITIES.values() if c.model_types]
            raise ValueError(f"model_type is an option of {words(tuned)} only")
        if self.int4_embeddings and not caps.int4_embeddings:
            offered = [c.label for c in CAPABILITIES.values() if c.int4_embeddings]
            raise ValueError(f"int4_embeddings is an option of {words(offered)} only")
        if self.weight_bits != 8 and not caps.narrow_weights:
            narrow = [c.label for c in CAPABILITIES.values() if c.narrow_weights]
            raise ValueError(f"weight_bits below 8 runs on {words(narrow)} only")
        return self


@QUANT_MODES.register("qat")
class QatConfig(QuantizeConfig):
    """Quantization-aware training: fine-tune with fake int8, then convert to a real int8 model."""

    mode: Literal["qat"] = "qat"
    precision: ClassVar[str] = "int8"  # the tolerance its exported graph is verified at
    backend: QuantBackend = QuantBackend.TORCHAO
    train: TrainConfig = TrainConfig(epochs=1, lr=1e-4)

    def needs(self) -> frozenset[Need]:
        return frozenset({Need.TRAIN_LOOP})

    weight_bits: int = Field(8, ge=2, le=8, description="Below 8: narrower weights (torchao).")
    distill: DistillConfig | None = Field(
        None, description="Learn from the float model's logits too."
    )

    @field_validator("distill")
    @classmethod
    def _logits_only(cls, v: DistillConfig | None) -> DistillConfig | None:
        if v is not None and not v.logits_only:
            raise ValueError(
                "QAT learns from the float model's logits only; hints and attention pairs "
                "belong in a distill step before quantize"
            )
        return v


@QUANT_MODES.register("dynamic-int8")
class DynamicInt8Config(QuantizeConfig):
    """int8 weights; activations quantized at run time from each batch's range (no calibration).

    ``onnxruntime`` quantizes MatMul/Gemm (and Conv) nodes; ``torchao`` quantizes Linear layers
    (w8a8, per-row weights, per-token activations) and leaves other layers in float.
    """

    mode: Literal["dynamic-int8"] = "dynamic-int8"
    precision: ClassVar[str] = "int8"  # the tolerance its exported graph is verified at
    per_channel: bool = False


class WeightOnlyConfig(QuantizeConfig):
    """Fields shared by the weight-only modes: low-bit Linear weights, float activations."""

    group_size: int = Field(
        32,
        ge=16,
        le=4096,
        description="Linear weights sharing a scale (int8 Gemm and every Conv: per channel).",
    )

    @field_validator("group_size")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError(f"group_size must be a power of two (16, 32, 64, ...), got {v}")
        return v


@QUANT_MODES.register("weight-only-int8")
class WeightOnlyInt8Config(WeightOnlyConfig):
    """int8 weights, float compute: Linear group-wise and Conv per channel (onnxruntime), or
    Linear per row (torchao)."""

    mode: Literal["weight-only-int8"] = "weight-only-int8"
    precision: ClassVar[str] = "int8"  # the tolerance its exported graph is verified at


@QUANT_MODES.register("weight-only-int4")
class WeightOnlyInt4Config(WeightOnlyConfig):
    """4-bit Linear weights, two per byte, group-wise scales (ONNX Runtime: Conv weights int8)."""

    mode: Literal["weight-only-int4"] = "weight-only-int4"
    precision: ClassVar[str] = "int4"  # the tolerance its exported graph is verified at


class HalfConfig(QuantizeConfig):
    """Half-precision weights and compute, served by PyTorch."""

    backend: QuantBackend = QuantBackend.TORCH

    @field_validator("ignore")
    @classmethod
    def _whole_model(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if v:
            raise ValueError("fp16/bf16 cast the whole model; ignore is not supported")
        return v


@QUANT_MODES.register("fp16")
class Fp16Config(HalfConfig):
    """float16 weights and compute (CPUs without fp16 arithmetic emulate it: measure)."""

    mode: Literal["fp16"] = "fp16"
    precision: ClassVar[str] = "fp16"  # the tolerance its exported graph is verified at


@QUANT_MODES.register("bf16")
class Bf16Config(HalfConfig):
    """bfloat16 weights and compute (fast on CPUs with AVX512-BF16 or AMX)."""

    mode: Literal["bf16"] = "bf16"
    precision: ClassVar[str] = "bf16"  # the tolerance its exported graph is verified at
