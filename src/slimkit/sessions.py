"""ONNX Runtime sessions as slimkit opens them, for verifying exports, serving, and models that
are only a graph.

Below ``models/`` (an ONNX file as a model source), ``export/`` (which runs every graph it
writes) and ``runtimes/`` (which serves them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from slimkit.errors import ShapeMismatchError

# ONNX Runtime's names for the element types of graph inputs a data set can feed.
_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


def session_options(threads: int, fold_weights: bool = False) -> ort.SessionOptions:
    """``threads`` intra-op threads, like torch.set_num_threads(threads); ``fold_weights``
    dequantizes a weight-only graph's stored weights once, at load.

    The pool's threads spin between the operators of a run (what keeps small models fast) but
    stop when the run returns: by default they go on spinning for tens of milliseconds after it,
    on the cores the next model in the process needs, which made an OpenVINO model timed right
    after an ONNX Runtime one up to 2x slower (docs/measurements.md, "Models sharing a
    process")."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.force_spinning_stop", "1")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if fold_weights:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    return options


def session(path: Path, threads: int, fold_weights: bool = False) -> ort.InferenceSession:
    """A CPU session as :func:`session_options` sets it up."""
    options = session_options(threads, fold_weights)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


Arrange = Callable[[Sequence[torch.Tensor]], list[torch.Tensor]]


def arrangement(wanted: Sequence[str], names: Sequence[str]) -> Arrange:
    """How a data set's inputs, named ``names``, become a graph's inputs ``wanted``, in order.

    By name where the graph's input names are the data's (slimkit's own exports, most
    converters), else by position when the counts match (a graph from another tool that names
    its image input ``input_1``). A ``token_type_ids`` input the data does not have is fed
    zeros, as BERT's tokenizer gives a single text. Decided once, so a runtime that serves a
    small model at batch 1 pays nothing per call for it.
    """
    names = list(names)
    if all(n in names for n in wanted):
        picks = [names.index(n) for n in wanted]
        return lambda inputs: [inputs[i] for i in picks]
    if "input_ids" in names and all(n in [*names, "token_type_ids"] for n in wanted):
        ids = names.index("input_ids")
        picks = [names.index(n) if n in names else -1 for n in wanted]
        return lambda inputs: [
            inputs[i] if i >= 0 else torch.zeros_like(inputs[ids]) for i in picks
        ]
    if len(wanted) == len(names):
        return list
    raise ShapeMismatchError(
        f"The graph takes inputs {list(wanted)}, the data gives {names}: name the graph's "
        "inputs as the data does, or use data with as many inputs as the graph."
    )


def feeds(
    sess: ort.InferenceSession, names: Sequence[str], inputs: Sequence[torch.Tensor]
) -> dict[str, np.ndarray]:
    """The session's inputs from a data set's named tensors (see :func:`arrangement`), each
    cast to the element type the graph declares (int32 token ids are common in graphs converted
    from TensorFlow)."""
    wanted = sess.get_inputs()
    arrays = arrangement([i.name for i in wanted], names)(inputs)
    return {
        i.name: x.numpy().astype(_NUMPY.get(i.type) or x.numpy().dtype, copy=False)
        for i, x in zip(wanted, arrays, strict=True)
    }
