"""The ``transfer`` pipeline step: load what fits of a checkpoint into the current model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slimkit._io import write_json
from slimkit.config import Config
from slimkit.errors import ModelLoadError
from slimkit.models.persist import read_tensors
from slimkit.state import ModelState
from slimkit.steps import StepContext, register_step
from slimkit.transfer.matching import transfer_weights


class TransferConfig(Config):
    """Which checkpoint, whether to match leftovers by shape, and layers to leave alone.

    ``trust_checkpoint`` allows a checkpoint that needs full unpickling (it can run code).
    """

    checkpoint: str
    by_shape: bool = True
    skip: tuple[str, ...] = ()
    trust_checkpoint: bool = False


def _parse(data: dict[str, Any], where: str) -> TransferConfig:
    return TransferConfig.from_dict(data, where)


@register_step("transfer", _parse, config=TransferConfig)
def transfer_step(state: ModelState, config: TransferConfig, ctx: StepContext) -> ModelState:
    """Load a checkpoint's matching tensors (by name, then shape), report what did not fit."""
    path = Path(config.checkpoint).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"Transfer checkpoint {str(path)!r} does not exist.")
    report = transfer_weights(
        state.module,
        read_tensors(path, config.trust_checkpoint),
        config.by_shape,
        config.skip,
        origin=str(path),
    )
    write_json(
        ctx.artifact_stem.with_name(ctx.artifact_stem.name + ".transfer.json"), report.to_dict()
    )
    return ModelState(state.module.eval(), state.runtime, notes=[report.summary()])
