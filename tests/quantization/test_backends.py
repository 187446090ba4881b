"""One capability table per quantization backend, read by everything that needs to know what
a backend can do: every handler it names imports, every mode runs somewhere, and the config
validator, the recovery ladder and backend: auto agree with it."""

from __future__ import annotations

import pytest

from slimkit.errors import RecipeError
from slimkit.quantization import QUANT_MODES, parse_quantize_config
from slimkit.quantization.backends import CAPABILITIES, backends_for, handler
from slimkit.quantization.configs import Estimator, QuantBackend


@pytest.mark.parametrize(
    ("backend", "mode"),
    [(b, m) for b, caps in CAPABILITIES.items() for m in caps.handlers],
    ids=lambda v: str(v),
)
def test_every_handler_in_the_table_imports(backend: QuantBackend, mode: str):
    assert callable(handler(backend, mode))


def test_every_registered_mode_runs_on_some_backend_and_only_those_are_accepted():
    for mode in QUANT_MODES:
        runs_on = backends_for(mode)
        assert runs_on, mode
        for backend in (b for b in QuantBackend if b is not QuantBackend.AUTO):
            data = {"mode": mode, "backend": str(backend)}
            if backend in runs_on:
                assert parse_quantize_config(data, "q").backend is backend
            else:
                with pytest.raises(RecipeError, match=f"{mode} cannot run on {backend}"):
                    parse_quantize_config(data, "q")


@pytest.mark.parametrize(
    "backend", [QuantBackend.ONNXRUNTIME, QuantBackend.TORCHAO, QuantBackend.OPENVINO]
)
def test_static_int8_accepts_exactly_the_estimators_its_backend_lists(backend: QuantBackend):
    offered = CAPABILITIES[backend].estimators
    for estimator in Estimator:
        data = {"mode": "static-int8", "backend": str(backend), "estimator": str(estimator)}
        if estimator in offered:
            parse_quantize_config(data, "q")
        else:
            with pytest.raises(RecipeError, match=f"estimator {estimator} runs on"):
                parse_quantize_config(data, "q")
