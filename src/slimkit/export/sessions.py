"""ONNX Runtime sessions as slimkit opens them, for verifying exports and for serving.

Below both ``export/`` (which runs every graph it writes) and ``runtimes/`` (which serves them).
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def session_options(threads: int, fold_weights: bool = False) -> ort.SessionOptions:
    """``threads`` intra-op threads, like torch.set_num_threads(threads); ``fold_weights``
    dequantizes a weight-only graph's stored weights once, at load."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if fold_weights:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    return options


def session(path: Path, threads: int, fold_weights: bool = False) -> ort.InferenceSession:
    """A CPU session as :func:`session_options` sets it up."""
    options = session_options(threads, fold_weights)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
