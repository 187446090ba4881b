"""Model sources: one string (or a small mapping) names a model everywhere.

Accepted forms, tried in this order (``slimkit list`` prints them):

- ``hf:path/to/dir``: a local Hugging Face encoder directory, with a classification head;
- ``path/to/model.safetensors``: a model slimkit saved (architecture manifest + weights);
- ``path/to/model.onnx``: an ONNX graph (:mod:`slimkit.models.graph_source`);
- ``package.module:factory`` or ``path/to/file.py:factory``: a user factory, called with kwargs;
- a form a plugin added with :func:`register_source_form`;
- a registered name such as ``resnet-mini`` or ``minilm-l6``.

Weights for a built architecture come from ``weights:`` — safetensors, or a PyTorch checkpoint
read with ``weights_only=True``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from torch import nn

from slimkit.config import Config
from slimkit.errors import ModelLoadError, UnsafeCheckpointError, quote
from slimkit.models import persist, surgery, text
from slimkit.models.arch import Arch
from slimkit.models.checkpoints import load_checkpoint_state
from slimkit.models.persist import is_import_path
from slimkit.models.registry import MODELS
from slimkit.registry import Registry

# What a data set tells a model factory: passed to parameters of these names (see ModelSpec.hints).
DATA_HINTS = ("num_classes", "in_channels")


class ModelSpec(Config):
    """Where a model comes from: ``source``, factory ``kwargs`` and optional ``weights``.

    Loading never runs code from a file unless the user opts in: ``trust_checkpoint`` allows a
    ``weights:`` checkpoint that needs full unpickling, ``trust_remote_code`` lets a Hugging Face
    directory run the modelling code it ships. Turn either on only for files you trust.
    """

    source: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    hints: dict[str, str | None] = Field(
        default_factory=dict,
        description="Data hint (num_classes, in_channels) -> the factory parameter it fills, "
        "or null to not pass it. Default: passed to a parameter of the same name.",
    )
    weights: str | None = None
    trust_checkpoint: bool = False
    trust_remote_code: bool = False

    @field_validator("hints")
    @classmethod
    def _known_hints(cls, v: dict[str, str | None]) -> dict[str, str | None]:
        unknown = sorted(set(v) - set(DATA_HINTS))
        if unknown:
            raise ValueError(f"unknown data hint {unknown[0]!r}; hints are {', '.join(DATA_HINTS)}")
        return v

    @field_validator("source")
    @classmethod
    def _nonempty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a model source cannot be empty")
        return v.strip()

    @classmethod
    def parse(cls, value: str | dict[str, Any] | ModelSpec, where: str = "model") -> ModelSpec:
        """Accept the short string form or the mapping form used in recipes."""
        if isinstance(value, ModelSpec):
            return value
        if isinstance(value, str):
            return cls.from_dict({"source": value}, where)
        if isinstance(value, dict):
            return cls.from_dict(value, where)
        raise ModelLoadError(f"'{where}' must be a source string or a mapping, got {quote(value)}.")


@dataclass(frozen=True)
class SourceForm:
    """One accepted shape of a model source string, e.g. ``hf:DIR``.

    ``matches`` says whether a source string has this form; ``build(spec, hints)`` builds the
    model (``hints`` are the data hints, see :class:`ModelSpec`); ``tokenizer_dir`` finds a text
    model's tokenizer; ``arch(spec, hints)`` is the record a saved model is rebuilt from, by
    default the source and its kwargs; ``trained(spec)`` whether the model comes with trained
    weights for its task, head included (else a run without training says it is untrained).
    """

    name: str
    example: str
    matches: Callable[[str], bool]
    build: Callable[[ModelSpec, dict[str, Any]], nn.Module]
    tokenizer_dir: Callable[[ModelSpec], Path | None] = lambda spec: None
    arch: Callable[[ModelSpec, dict[str, Any]], Arch] | None = None
    trained: Callable[[ModelSpec], bool] = lambda spec: False


# Forms in the order they are tried; a source matching none is a registered model name.
SOURCE_FORMS: Registry[SourceForm] = Registry("model source form")


def register_source_form(form: SourceForm) -> SourceForm:
    """Accept a new shape of model source string everywhere a model is named (recipes, CLI,
    students, saved models), tried after the forms registered before it.

    Give the form a prefix that is not a Python module name (``my-zoo:``, with a hyphen): a
    source shaped like ``module:name`` is always an import path, for safety's sake.

    >>> register_source_form(SourceForm("zoo", "zoo:NAME", lambda s: s.startswith("zoo:"),
    ...                                 build_from_zoo))  # doctest: +SKIP
    """
    return SOURCE_FORMS.add(form.name, form, help=form.example)


def existing_path(path: str) -> Path:
    """``path`` as a Path, or a ModelLoadError naming it when nothing is there."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelLoadError(f"Model file or directory {str(p)!r} does not exist.")
    return p


def _build_hf(spec: ModelSpec, hints: dict[str, Any]) -> nn.Module:
    kwargs = {**hints, **spec.kwargs}
    unknown = sorted(set(spec.kwargs) - {"num_classes", "new_head"})
    if unknown:
        raise ModelLoadError(
            f"A Hugging Face directory takes the kwargs num_classes and new_head, not "
            f"{quote(unknown)}: its architecture comes from its config.json."
        )
    return text.load_classifier(
        existing_path(spec.source[3:]),
        int(kwargs.get("num_classes", 2)),
        kwargs.get("pretrained", True),
        trust_remote_code=spec.trust_remote_code,
        new_head=bool(kwargs.get("new_head", False)),
    )


def _build_saved(spec: ModelSpec, hints: dict[str, Any]) -> nn.Module:
    path = existing_path(spec.source)
    arch = persist.saved_arch(path)
    if arch is None:
        raise ModelLoadError(
            f"{path} holds weights but no architecture. Name the architecture and load these "
            f"weights into it: model: {{source: resnet-mini, weights: {path}}}."
        )
    if spec.kwargs:  # the file fixes the architecture; ignoring them would be silent
        raise ModelLoadError(
            f"{path} is a saved model: its architecture comes from the file, so kwargs "
            f"{quote(spec.kwargs)} cannot change it. For another head or size, build a fresh "
            f"model ({quote(arch.source)} with those kwargs) and load this one into it with a "
            f"transfer step (transfer: {{checkpoint: {path}}})."
        )
    inner = ModelSpec(source=arch.source, kwargs=arch.kwargs)
    if is_import_path(inner.source) and not (spec.trust_checkpoint or persist.signed_here(path)):
        raise UnsafeCheckpointError(
            f"{path} was saved from the factory {quote(inner.source)}, and building it imports "
            "and runs that code; the file was not saved by slimkit on this machine, so it "
            "cannot vouch for it. If you trust that code, pass --trust-checkpoint (recipe: "
            "model.trust_checkpoint: true)."
        )
    # The weights come from the file, so skip loading pretrained ones first.
    model = _form_for(inner.source).build(inner, {"pretrained": False})
    surgery.apply_edits(model, arch)
    persist.reshape_to_manifest(model, persist.saved_layers(path))
    persist.load_weights_into(model, path)
    return model


def _import_factory(ref: str) -> Callable[..., nn.Module]:
    module_ref, _, attr = ref.rpartition(":")
    try:
        if module_ref.endswith(".py"):
            path = existing_path(module_ref)
            mod_spec = importlib.util.spec_from_file_location(path.stem, path)
            assert mod_spec is not None and mod_spec.loader is not None
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            # Like `python -m`, let modules in the working directory be found.
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_ref)
    except ImportError as err:
        raise ModelLoadError(
            f"Cannot import {module_ref!r} for model {ref!r}: {err}. Use 'package.module:factory' "
            "with the package importable (installed, or in the working directory)."
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelLoadError(f"{module_ref!r} has no callable {attr!r} (from model {ref!r}).")
    return factory


def _build_import(spec: ModelSpec, hints: dict[str, Any]) -> nn.Module:
    factory = _import_factory(spec.source)
    return _call(factory, spec, hints)


def _build_registered(spec: ModelSpec, hints: dict[str, Any]) -> nn.Module:
    if spec.source not in MODELS:
        raise ModelLoadError(
            MODELS.unknown_message(spec.source)
            + " Other forms: "
            + ", ".join(f.example for f in SOURCE_FORMS.values())
            + "."
        )
    return _call(MODELS.get(spec.source), spec, hints)


def factory_of(source: str) -> Callable[..., nn.Module] | None:
    """The factory a registered name or an import path builds with; None for other forms."""
    if source in MODELS:
        return MODELS.get(source)
    if is_import_path(source):
        return _import_factory(source)
    return None


def _resolve_kwargs(
    factory: Callable[..., nn.Module], spec: ModelSpec, hints: dict[str, Any]
) -> dict[str, Any]:
    """The spec's kwargs plus the data hints, each passed to the factory parameter of its name
    (or the one ``spec.hints`` maps it to) unless the spec's kwargs set that parameter.

    A factory taking ``**kwargs`` gets no hint it does not name: it may forward them to a
    constructor that does not want them. ``spec.hints`` maps a hint there explicitly.
    """
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = {n for n, p in params.items() if p.kind not in _VARIADIC}
    kwargs = {}
    for hint, value in hints.items():
        target = spec.hints.get(hint, hint)
        if target is None:
            continue
        if hint in spec.hints and not (target in named or takes_any):
            raise ModelLoadError(
                f"model.hints maps {hint} to {quote(target)}, but {quote(spec.source)} takes "
                f"no parameter of that name; it takes {', '.join(sorted(named)) or 'none'}."
            )
        if target in named or (hint in spec.hints and takes_any):
            kwargs[target] = value
    return {**kwargs, **spec.kwargs}


_VARIADIC = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)


def _call(factory: Callable[..., nn.Module], spec: ModelSpec, hints: dict[str, Any]) -> nn.Module:
    kwargs = _resolve_kwargs(factory, spec, hints)
    try:
        model = factory(**kwargs)
    except (TypeError, ValueError, RuntimeError) as err:  # torch refuses bad sizes at runtime
        passed = [h for h in DATA_HINTS if h in hints and spec.hints.get(h, h) in kwargs]
        how = (
            f" slimkit passed the data hints {', '.join(passed)} from the data set; rename or "
            "drop one with model.hints, e.g. hints: {num_classes: n_out, in_channels: null}."
            if passed
            else ""
        )
        raise ModelLoadError(
            f"Cannot build model {quote(spec.source)} with {quote(kwargs)}: {err}.{how}"
        ) from None
    if not isinstance(model, nn.Module):
        raise ModelLoadError(
            f"Factory {spec.source!r} returned {type(model).__name__}, not nn.Module."
        )
    return model


def _registered_tokenizer(spec: ModelSpec) -> Path | None:
    getter = (
        getattr(MODELS.get(spec.source), "tokenizer_dir", None) if spec.source in MODELS else None
    )
    return getter() if getter else None


def _saved_tokenizer(spec: ModelSpec) -> Path | None:
    arch = persist.saved_arch(existing_path(spec.source))
    return tokenizer_dir(ModelSpec(source=arch.source)) if arch else None


def _hf_arch(spec: ModelSpec, hints: dict[str, Any]) -> Arch:
    return Arch(
        source=spec.source, kwargs={"num_classes": hints.get("num_classes", 2), **spec.kwargs}
    )


def _saved_arch(spec: ModelSpec, hints: dict[str, Any]) -> Arch:
    return persist.saved_arch(existing_path(spec.source)) or Arch(source=spec.source)


def _factory_arch(spec: ModelSpec, hints: dict[str, Any]) -> Arch:
    factory = factory_of(spec.source)
    assert factory is not None
    return Arch(source=spec.source, kwargs=_resolve_kwargs(factory, spec, hints))


register_source_form(
    SourceForm(
        "Hugging Face directory",
        "hf:path/to/dir",
        lambda s: s.startswith("hf:"),
        _build_hf,
        lambda spec: existing_path(spec.source[3:]),
        _hf_arch,
        lambda spec: (
            not spec.kwargs.get("new_head") and text.has_head(existing_path(spec.source[3:]))
        ),
    )
)
register_source_form(
    SourceForm(
        "slimkit-saved model",
        "path/to/model.safetensors",
        lambda s: s.endswith(".safetensors"),
        _build_saved,
        _saved_tokenizer,
        _saved_arch,
        lambda spec: True,
    )
)
register_source_form(
    SourceForm(
        "import path", "package.module:factory", is_import_path, _build_import, arch=_factory_arch
    )
)
# The fallback, tried after every registered form: a name in the model registry.
REGISTERED_NAME = SourceForm(
    "registered name",
    "resnet-mini",
    lambda s: True,
    _build_registered,
    _registered_tokenizer,
    _factory_arch,
)


def _form_for(source: str) -> SourceForm:
    return next((f for f in SOURCE_FORMS.values() if f.matches(source)), REGISTERED_NAME)


def build_model(spec: ModelSpec, **hints: Any) -> nn.Module:
    """Build the model ``spec`` names, with its weights loaded, in eval mode.

    ``hints`` (``num_classes``, ``in_channels``) come from the data set and are passed to
    factories that accept them, unless the spec's kwargs already set them.

    >>> from slimkit.models import ModelSpec, build_model
    >>> net = build_model(ModelSpec.parse("resnet-mini"), num_classes=10, in_channels=1)
    >>> sum(p.numel() for p in net.parameters())
    77754
    """
    model = _form_for(spec.source).build(spec, hints)
    if spec.weights is not None:
        load_weights(model, spec.weights, trust=spec.trust_checkpoint)
    return model.eval()


def load_weights(model: nn.Module, weights: str | Path, trust: bool = False) -> None:
    """Load a ``.safetensors`` file or a PyTorch checkpoint into ``model``.

    Checkpoints are read with ``weights_only=True`` unless ``trust`` (see
    :func:`slimkit.models.checkpoints.load_checkpoint_state`).
    """
    path = existing_path(str(weights))
    if path.suffix == ".safetensors":
        persist.load_weights_into(model, path)
    else:
        persist.apply_state_dict(model, load_checkpoint_state(path, trust), path)


def comes_trained(spec: ModelSpec) -> bool:
    """Whether the model ``spec`` names has trained weights for its task, head included."""
    return spec.weights is not None or _form_for(spec.source).trained(spec)


def tokenizer_dir(spec: ModelSpec) -> Path | None:
    """The tokenizer folder of a text model, or None for models that take tensors."""
    return _form_for(spec.source).tokenizer_dir(spec)


def load_tokenizer_for(spec: ModelSpec) -> Any:
    """The Hugging Face tokenizer of a text model, or None."""
    path = tokenizer_dir(spec)
    if path is None:
        return None
    return text.load_tokenizer(path, trust_remote_code=spec.trust_remote_code)


def arch_of(spec: ModelSpec, hints: dict[str, Any]) -> Arch:
    """The record to save with a model built from ``spec`` (hints resolved)."""
    form = _form_for(spec.source)
    arch = (
        form.arch(spec, hints)
        if form.arch is not None
        else Arch(source=spec.source, kwargs=spec.kwargs)
    )
    kwargs = {k: v for k, v in arch.kwargs.items() if k != "pretrained"}
    return arch.model_copy(update={"kwargs": kwargs})
