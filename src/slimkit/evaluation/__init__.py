"""Evaluation: task metrics, parameters, non-zeros, size, MACs, latency and throughput."""

from slimkit.evaluation.evaluate import Measurement, evaluate, measure, time_interleaved
from slimkit.evaluation.macs import count_macs
from slimkit.evaluation.metrics import METRICS, predict
from slimkit.evaluation.size import count_nonzero, count_params
from slimkit.timing import LatencyStats, measure_latency

__all__ = [
    "METRICS",
    "LatencyStats",
    "Measurement",
    "count_macs",
    "count_nonzero",
    "count_params",
    "evaluate",
    "measure",
    "measure_latency",
    "predict",
    "time_interleaved",
]
