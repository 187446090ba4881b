"""Save a model as data: an architecture manifest plus safetensors weights, never a pickle.

The manifest records how to build the network (its source and kwargs) and the constructor
arguments of every shape-bearing layer. Loading builds the network from its source, rebuilds
each layer whose recorded shape differs (a structurally pruned conv with fewer channels, say),
then loads the weights strictly. So a pruned model round-trips with no code execution.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from slimkit._io import atomic_path
from slimkit._signing import sign, verify
from slimkit.errors import ModelLoadError, few, quote
from slimkit.models.arch import Arch
from slimkit.models.checkpoints import load_checkpoint_state
from slimkit.models.embedding import RemappedEmbedding
from slimkit.models.sparse import compress_state, decompress_state
from slimkit.models.surgery import replace, sync_head_counts

FORMAT_VERSION = "1"
_ARCH_MAC = "slimkit.arch.mac"

# Constructor arguments of each layer type whose shape pruning can change, read off an instance.
_LAYER_ARGS: dict[type[nn.Module], Callable[[Any], dict[str, Any]]] = {
    nn.Conv2d: lambda m: {
        "in_channels": m.in_channels,
        "out_channels": m.out_channels,
        "kernel_size": list(m.kernel_size),
        "stride": list(m.stride),
        "padding": list(m.padding) if not isinstance(m.padding, str) else m.padding,
        "dilation": list(m.dilation),
        "groups": m.groups,
        "bias": m.bias is not None,
        "padding_mode": m.padding_mode,
    },
    nn.Linear: lambda m: {
        "in_features": m.in_features,
        "out_features": m.out_features,
        "bias": m.bias is not None,
    },
    nn.BatchNorm1d: lambda m: _bn_args(m),
    nn.BatchNorm2d: lambda m: _bn_args(m),
    nn.LayerNorm: lambda m: {
        "normalized_shape": list(m.normalized_shape),
        "eps": m.eps,
        "elementwise_affine": m.elementwise_affine,
        "bias": m.bias is not None,
    },
    nn.Embedding: lambda m: {
        "num_embeddings": m.num_embeddings,
        "embedding_dim": m.embedding_dim,
        "padding_idx": m.padding_idx,
    },
    RemappedEmbedding: lambda m: {
        "vocab_size": m.remap.numel(),
        "num_embeddings": m.embedding.num_embeddings,
        "embedding_dim": m.embedding.embedding_dim,
        "padding_idx": m.embedding.padding_idx,
    },
}
# Layers a pruning method puts in place of another type (a trimmed vocabulary's embedding).
_REPLACES: dict[type[nn.Module], type[nn.Module]] = {RemappedEmbedding: nn.Embedding}


def _layer_args() -> dict[type[nn.Module], Callable[[Any], dict[str, Any]]]:
    """The shape-bearing layer types: the table above, plus transformers' Conv1D (GPT-2's
    projections) once transformers is loaded, which any model holding one has done."""
    conv1d = getattr(sys.modules.get("transformers.pytorch_utils"), "Conv1D", None)
    if conv1d is None:
        return _LAYER_ARGS
    return {**_LAYER_ARGS, conv1d: lambda m: {"nf": m.nf, "nx": m.nx}}


def _bn_args(m: nn.modules.batchnorm._BatchNorm) -> dict[str, Any]:
    return {
        "num_features": m.num_features,
        "eps": m.eps,
        "momentum": m.momentum,
        "affine": m.affine,
        "track_running_stats": m.track_running_stats,
    }


def layer_manifest(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{qualified name: {"type", "args"}}`` for every shape-bearing layer of ``model``."""
    args = _layer_args()
    return {
        name: {"type": type(m).__name__, "args": args[type(m)](m)}
        for name, m in model.named_modules()
        if type(m) in args
    }


def is_import_path(source: str) -> bool:
    """Whether model source ``source`` names a factory to import (``package.module:f``,
    ``path/to/file.py:f``): code, which a manifest naming it may only ask for with this
    machine's signature. Anything of that shape is taken for one, whatever else matches it."""
    module, sep, attr = source.rpartition(":")
    if not sep or not attr.isidentifier():
        return False
    return module.endswith(".py") or all(part.isidentifier() for part in module.split("."))


def signed_here(path: Path) -> bool:
    """Whether ``path``'s architecture record carries this machine's signature, i.e. slimkit
    saved it here (see :mod:`slimkit._signing`)."""
    meta = read_metadata(path)
    return "slimkit.arch" in meta and verify(meta["slimkit.arch"].encode(), meta.get(_ARCH_MAC))


def save_model(
    model: nn.Module, path: str | os.PathLike[str], arch: Arch | dict[str, Any] | None
) -> Path:
    """Write ``model``'s weights and manifest to ``path`` (a ``.safetensors`` file), atomically.

    ``arch`` (an :class:`~slimkit.models.arch.Arch`, or its fields as a mapping:
    ``{"source": "resnet-mini", "kwargs": {...}}``) is what a model source needs to build the
    unpruned network before reshaping it to the manifest; without one the file holds weights
    that load only into a model built for them.
    """
    if isinstance(arch, dict):
        arch = Arch.model_validate(arch)
    metadata = {
        "slimkit.format": FORMAT_VERSION,
        "slimkit.layers": json.dumps(layer_manifest(model), sort_keys=True),
    }
    if arch is not None:
        metadata["slimkit.arch"] = arch.to_json()
        if is_import_path(arch.source):  # rebuilding it will import a factory
            metadata[_ARCH_MAC] = sign(metadata["slimkit.arch"].encode())
    state, subclass_metadata = _flatten(model.state_dict())
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={**metadata, **subclass_metadata})
    return Path(path)


def _is_plain(t: torch.Tensor) -> bool:
    return type(t) in (torch.Tensor, nn.Parameter)


def _flatten(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors safetensors can store, plus metadata describing any torchao tensor subclasses.

    Tied weights (shared storage) cannot be stored twice; the first name of each is kept.
    """
    plain: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, t in state_dict.items():
        if not _is_plain(t):
            continue
        key = t.untyped_storage().data_ptr() if t.numel() else id(t)
        if key not in seen:
            seen.add(key)
            plain[name] = t.detach().contiguous().clone()
    # Pruned tensors are stored as bitmask + non-zero values, so size on disk falls with sparsity.
    plain, sparse_metadata = compress_state(plain)
    subclasses = {n: t for n, t in state_dict.items() if not _is_plain(t)}
    if not subclasses:
        return plain, sparse_metadata
    # Quantized weights (torchao's Int8Tensor, ...) are stored as their inner tensors plus a JSON
    # description, torchao's own safetensors layout: still no pickle.
    from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict

    data, meta = flatten_tensor_state_dict(subclasses)
    return {**plain, **data}, {**meta, **sparse_metadata}


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as err:
        raise ModelLoadError(f"{path} is not a readable safetensors file: {err}") from None


def saved_arch(path: Path) -> Arch | None:
    """The architecture a slimkit-saved file was written with, or None for plain safetensors."""
    meta = read_metadata(path)
    if "slimkit.arch" not in meta:
        return None
    arch = Arch.parse(_metadata_json(path, meta, "slimkit.arch"))
    if arch is None:
        raise ModelLoadError(_damaged(path, "slimkit.arch"))
    return arch


def saved_layers(path: Path) -> dict[str, dict[str, Any]]:
    """The layer manifest (:func:`layer_manifest`) a slimkit-saved file was written with."""
    meta = read_metadata(path)
    if "slimkit.layers" not in meta:
        return {}
    return _metadata_json(path, meta, "slimkit.layers")


def _metadata_json(path: Path, meta: dict[str, str], key: str) -> dict[str, Any]:
    try:
        value = json.loads(meta[key])
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise ModelLoadError(_damaged(path, key))
    return value


def _damaged(path: Path, key: str) -> str:
    return (
        f"{path} has a damaged {key} record in its metadata; it was not saved by slimkit "
        "as it is now. Re-save the model, or load only its weights with weights:."
    )


def reshape_to_manifest(model: nn.Module, manifest: dict[str, dict[str, Any]]) -> None:
    """Replace each layer of ``model`` whose constructor arguments differ from ``manifest``."""
    layer_args = _layer_args()
    by_type = {t.__name__: t for t in layer_args}
    for name, entry in manifest.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("args"), dict):
            raise ModelLoadError(f"The saved model's record of layer {quote(name)} is damaged.")
        try:
            current = model.get_submodule(name)
        except AttributeError:
            raise ModelLoadError(
                f"The saved model has a layer {quote(name)} that the architecture does not; "
                "it was saved from a different network."
            ) from None
        layer_type = by_type.get(entry.get("type"))  # type: ignore[arg-type]
        replaced = layer_type is not None and _REPLACES.get(layer_type) is type(current)
        if layer_type is None or (type(current) is not layer_type and not replaced):
            raise ModelLoadError(
                f"Layer {quote(name)} is {type(current).__name__} in the architecture but "
                f"{quote(entry.get('type'))} in the saved model."
            )
        if replaced or layer_args[layer_type](current) != entry["args"]:
            try:
                layer = layer_type(**entry["args"])
            except (TypeError, ValueError, RuntimeError) as err:
                raise ModelLoadError(
                    f"The saved model's layer {quote(name)} cannot be rebuilt from its record "
                    f"{quote(entry['args'])}: {err}"
                ) from None
            replace(model, name, layer)
    # Attention modules read their head count off the projections; keep the attributes true.
    sync_head_counts(model)


# What decoding a file's own records (sparse masks, torchao's tensor layout) raises when those
# records contradict its tensors: the file was damaged or not written by slimkit.
_DECODING_ERRORS = (
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    RuntimeError,
    RecursionError,
)


@contextmanager
def _decoding(path: Path) -> Iterator[None]:
    """Turn a failure to decode ``path``'s records into a ModelLoadError naming the file."""
    try:
        yield
    except _DECODING_ERRORS as err:
        said = " ".join(str(err).split())[:200] or type(err).__name__
        raise ModelLoadError(
            f"{path} is damaged: its records do not match its tensors ({said}). It was not "
            "written by slimkit as it is now; save the model again."
        ) from None


def _read_safetensors(path: Path, metadata: dict[str, str]) -> dict[str, torch.Tensor]:
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ModelLoadError(f"{path} is not a readable safetensors file: {err}") from None
    with _decoding(path):
        return decompress_state(state, metadata)


def read_tensors(path: Path, trust: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (sparse storage expanded) or a PyTorch checkpoint
    (read with ``weights_only=True`` unless ``trust``, see :mod:`slimkit.models.checkpoints`),
    by name."""
    if path.suffix == ".safetensors":
        return _read_safetensors(path, read_metadata(path))
    return load_checkpoint_state(path, trust)


def load_weights_into(model: nn.Module, path: Path) -> None:
    """Load ``path`` (safetensors) into ``model`` strictly, naming every mismatch.

    Half-precision files turn the model half precision; torchao-quantized files put their
    quantized tensors in place of the float weights.
    """
    metadata = read_metadata(path)
    state = _read_safetensors(path, metadata)
    with _decoding(path):
        if "tensor_names" in metadata:  # torchao's layout
            from torchao.prototype.safetensors.safetensors_support import (
                unflatten_tensor_state_dict,
            )

            quantized, rest = unflatten_tensor_state_dict(state, metadata)
            state = {**rest, **quantized}
        dtypes = {t.dtype for t in state.values() if _is_plain(t) and t.is_floating_point()}
        if len(dtypes) == 1 and (dtype := dtypes.pop()) in (torch.float16, torch.bfloat16):
            model.to(dtype)
        apply_state_dict(model, state, path)


def apply_state_dict(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """``load_state_dict(strict)`` whose failures say which tensors are missing or misshapen."""
    own = model.state_dict()
    assign = any(not _is_plain(t) for t in state.values())
    # Tied weights were saved once; fill the aliases from the tensor they share storage with.
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in state
        if k in own and state[k].shape != own[k].shape
    ]
    tied = _tied_aliases(model)
    missing = [k for k in missing if tied.get(k) not in state]
    broken = [
        k
        for k, t in state.items()
        if _is_plain(t) and t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    if broken:
        raise ModelLoadError(
            f"The weights in {path} contain NaN or Inf values ({few(broken)}): the model that "
            "saved them diverged or the file is damaged. Use weights from before the divergence."
        )
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing {few(missing)}")
        if unexpected:
            parts.append(f"unexpected {few(unexpected)}")
        if shape:
            parts.append(f"shape mismatch (file vs model) {few(shape)}")
        raise ModelLoadError(
            f"The weights in {path} do not fit the model: {'; '.join(parts)}. "
            "Check that the architecture and its kwargs match the ones the weights were saved from."
        )
    # assign: quantized tensor subclasses replace the float parameters rather than fill them.
    model.load_state_dict(state, strict=False, assign=assign)


def _tied_aliases(model: nn.Module) -> dict[str, str]:
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, t in model.state_dict(keep_vars=False).items():
        if not t.numel():
            continue
        ptr = t.untyped_storage().data_ptr()
        if ptr in first:
            aliases[name] = first[ptr]
        else:
            first[ptr] = name
    return aliases
