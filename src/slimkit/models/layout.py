"""Channels-last memory layout for convolutional networks while PyTorch trains or scores them.

oneDNN, PyTorch's CPU convolution library, computes in NHWC: on NCHW weights every convolution
reorders its input, output and gradients. A network whose 2-D convolutions keep their weights
channels-last runs them all in NHWC, with the reorders left only at its edges. It is the layout
PyTorch's performance guide recommends for CNNs; ``benchmarks/layout.py`` times it against NCHW
in each phase slimkit runs (docs/measurements.md, "Channels-last weights").

The layout is scoped: weights go back to PyTorch's default layout when the block ends, so what
is saved, exported, served or timed afterwards is the network as its user holds it. A network
whose forward needs NCHW strides (a ``.view`` that flattens a feature map, say) keeps them: the
layout is tried on a sample first.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


def _hold(model: nn.Module, layout: torch.memory_format) -> None:
    # outside inference mode even within one: the weights stay tensors that may train later
    with torch.inference_mode(False):
        # Module.to documents memory_format; its type stubs leave it out
        model.to(memory_format=layout)  # type: ignore[call-overload]


def _runs_channels_last(model: nn.Module, sample: Sequence[torch.Tensor]) -> bool:
    """Whether ``model``, its weights already channels-last, runs on ``sample``; in eval mode,
    so BatchNorm's running statistics are untouched, each module's mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.inference_mode():
            model(*sample)
    except RuntimeError:  # e.g. "view size is not compatible with input tensor's size and stride"
        return False
    finally:
        for module, training in modes:
            module.training = training
    return True


@contextmanager
def channels_last(model: nn.Module, sample: Sequence[torch.Tensor]) -> Iterator[bool]:
    """Hold ``model``'s 4-D weights channels-last inside the block, where it has 2-D
    convolutions and runs that way on ``sample`` (a batch of its inputs); yields whether it
    does. The same ``Parameter`` objects keep their values, so optimizers and hooks built on
    them are unaffected.

    >>> with channels_last(student, bundle.sample_inputs(2)):
    ...     train(student, bundle, config)  # doctest: +SKIP
    """
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        yield False
        return
    _hold(model, torch.channels_last)
    try:
        used = _runs_channels_last(model, sample)
        if not used:
            _hold(model, torch.contiguous_format)
        yield used
    finally:
        _hold(model, torch.contiguous_format)
