"""Turn a ``--model`` spec into a :class:`Classifier`, refusing files that could run code on load.

Accepted specs: ``pkg.module:factory`` (optionally with ``--weights file.safetensors``), TorchScript
archives (``.pt``, ``.pth``, ``.ts``), ONNX (``.onnx``), skops (``.skops``) and live endpoints
(``https://host/v2/models/NAME``, Open Inference Protocol v2). Pickles, including ``torch.save``
checkpoints, are refused: unpickling runs whatever code the file names.
"""

from __future__ import annotations

import importlib
import os
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bastion.core.errors import PICKLE_SUFFIXES, InputError, UnsafeFileError
from bastion.core.files import path_text
from bastion.core.ids import file_digest
from bastion.models.base import Classifier
from bastion.models.ensemble_spec import MANIFEST_SUFFIXES, load_ensemble
from bastion.models.torch_adapter import TorchClassifier, check_channel_values

TORCHSCRIPT_SUFFIXES = frozenset({".pt", ".pth", ".ts"})
#: Top-level packages whose types a ``.skops`` file may contain without being refused.
TRUSTED_SKOPS_PACKAGES = frozenset({"sklearn", "numpy", "scipy"})

ACCEPTED_MODELS = (
    "pkg.module:factory (returning an nn.Module or a Classifier; weights via --weights "
    "file.safetensors), a TorchScript archive (.pt, .pth, .ts), an ONNX file (.onnx), "
    "a skops file (.skops), an ensemble manifest (.yaml, .yml, .json), "
    "a live endpoint (http(s)://host/v2/models/NAME, Open Inference Protocol v2)"
)
#: The environment variable an endpoint's API key is read from when none is passed.
API_KEY_ENV = "BASTION_API_KEY"
PICKLE_ADVICE = (
    "Pickle files can run arbitrary code when they are loaded, so bastion refuses them. Export "
    "the weights as safetensors with safetensors.torch.save_file(model.state_dict(), "
    "'model.safetensors') and pass --model pkg.module:factory --weights model.safetensors "
    "(or export the model to TorchScript or ONNX)."
)
_FACTORY_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_factory_spec(spec: str | None) -> bool:
    """Whether ``spec`` has the form ``pkg.module:factory``."""
    return spec is not None and bool(_FACTORY_SPEC.match(spec))


def is_endpoint_spec(spec: str) -> bool:
    """Whether ``spec`` names a live endpoint (``http://`` or ``https://``)."""
    return spec.lower().startswith(("http://", "https://"))


@dataclass(frozen=True)
class LoadedModel:
    """A classifier with what the evidence record needs to name it.

    Attributes:
        classifier: the model behind the :class:`Classifier` protocol.
        description: the spec and files it was loaded from, for reports.
        sha256: hex SHA-256 of the model file (the weights file for a factory), ``None`` when
            the model is only code (a factory without weights).
        kind: ``torch``, ``torchscript``, ``onnx``, ``sklearn``, ``remote`` or a ready classifier's own kind;
            ``sklearn-text`` for a scikit-learn pipeline on raw strings, whose ``classifier`` is then a
            :class:`~bastion.models.text_adapter.TextClassifier` (strings in, not tensors: served by the
            gateway, not attacked).
    """

    classifier: Classifier
    description: str
    sha256: str | None
    kind: str


@dataclass(frozen=True)
class _Options:
    input_shape: tuple[int, ...] | None
    num_classes: int | None
    bounds: tuple[float, float]
    mean: Sequence[float] | None
    std: Sequence[float] | None


def load_classifier(
    spec: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    api_key: str | None = None,
    budget: int | None = None,
    journal: str | Path | None = None,
) -> LoadedModel:
    """Load the model named by ``spec`` (see ``ACCEPTED_MODELS``).

    Args:
        spec: ``pkg.module:factory``, a model file path (a ``str`` or an ``os.PathLike`` such as
            ``pathlib.Path``), or an endpoint URL ``http(s)://host/v2/models/NAME`` (a
            :class:`~bastion.models.remote.RemoteClassifier`; ``kind="remote"``, ``sha256=None``). A model
            in memory is not loaded but wrapped: ``LoadedModel(TorchClassifier(module, input_shape,
            num_classes), description, None, "torch")``.
        weights: a ``.safetensors`` state dict for a factory's module (strict key/shape match), a ``str``
            or an ``os.PathLike``.
        input_shape: per-sample shape, e.g. ``(1, 28, 28)``; needed when the model cannot say.
        num_classes: ``C``; needed when the model cannot say.
        bounds: valid input range, default ``(0, 1)``.
        mean, std: per-channel normalisation for torch modules, applied inside the adapter.
        api_key: an endpoint's API key (sent as ``Authorization: Bearer KEY``); default: the
            ``BASTION_API_KEY`` environment variable, if set. Endpoints only.
        budget: the most samples the endpoint may be sent (``None``: no limit). Endpoints only.
        journal: a JSON-lines file keeping the endpoint's answers, so that an interrupted attack resumes
            without asking again. Endpoints only.

    Raises:
        InputError: a missing file, an unknown form, or a model that does not fit its arguments.
        UnsafeFileError: a pickle (``.pkl``, ``torch.save`` checkpoint) or a skops file with
            types from outside scikit-learn, numpy and scipy.
        RemoteError: an endpoint whose metadata cannot be read.
        TypeError: ``spec`` or ``weights`` is neither a string nor a path (an ``nn.Module``, an estimator).
    """
    spec = _spec_text(spec, "spec")
    weights = None if weights is None else _spec_text(weights, "weights")
    options = _Options(
        input_shape=None if input_shape is None else tuple(int(d) for d in input_shape),
        num_classes=num_classes,
        bounds=(float(bounds[0]), float(bounds[1])),
        mean=mean,
        std=std,
    )
    if is_endpoint_spec(spec):
        return _load_remote(spec, weights, options, api_key=api_key, budget=budget, journal=journal)
    if api_key is not None or budget is not None or journal is not None:
        raise InputError(f"api_key, budget and journal apply to http(s) endpoints only, not to {spec}")
    if is_factory_spec(spec) and not Path(spec).exists():
        return _load_factory(spec, weights, options)
    if weights is not None:
        raise InputError(
            f"--weights goes with --model pkg.module:factory; {spec} already holds its weights"
        )
    path = Path(spec).expanduser()
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise UnsafeFileError(f"{path}: {PICKLE_ADVICE}")
    if path.is_dir():
        raise InputError(f"--model {path} is a folder, not a model file: give the model file inside it "
                         f"(e.g. {path / 'model.onnx'}) or pkg.module:factory")
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    if suffix in MANIFEST_SUFFIXES:
        return _load_manifest(path, options)
    loader = _FILE_LOADERS.get(suffix)
    if loader is None:
        raise InputError(_unknown_model_message(path))
    if suffix not in TORCHSCRIPT_SUFFIXES and (mean is not None or std is not None):
        raise InputError(
            f"mean/std apply to torch models only; build the normalisation into {path.name}"
        )
    return loader(path, options)


def _spec_text(value: object, name: str) -> str:
    """``value`` as text: a string as it is, an ``os.PathLike`` converted; otherwise a ``TypeError`` that says
    what is accepted and how to use a model that is already in memory."""
    text = path_text(value)
    if text is not None:
        return text
    given = f"{type(value).__module__}.{type(value).__qualname__}"
    raise TypeError(
        f"load_classifier's {name} is a str or os.PathLike ({ACCEPTED_MODELS}); got {given}. A model already "
        "in memory needs no loading: wrap a torch module as LoadedModel(TorchClassifier(module, input_shape, "
        "num_classes), description, None, 'torch') (bastion.models.torch_adapter.TorchClassifier), a fitted "
        "scikit-learn estimator as LoadedModel(SklearnClassifier(estimator, input_shape=...), description, None, "
        "'sklearn') (bastion.models.sklearn_adapter)"
    )


def _unknown_model_message(path: Path) -> str:
    if path.suffix.lower() == ".safetensors":
        return (
            f"{path} holds weights without an architecture; pass --model pkg.module:factory "
            f"--weights {path}"
        )
    return f"unknown model format: {path}. Accepted: {ACCEPTED_MODELS}"


# --- pkg.module:factory -----------------------------------------------------------------------


def _load_factory(spec: str, weights: str | None, options: _Options) -> LoadedModel:
    built = _call_factory(spec)
    if isinstance(built, nn.Module):
        digest = None
        if weights is not None:
            _load_weights(built, Path(weights).expanduser(), spec)
            digest = file_digest(str(Path(weights).expanduser()))
        classifier = _wrap_module(built, options, source=spec, kind="torch", probe=False)
        description = spec if weights is None else f"{spec} with weights {weights}"
        return LoadedModel(classifier, description, digest, "torch")
    if isinstance(built, Classifier):
        if weights is not None or options.mean is not None or options.std is not None:
            raise InputError(
                f"{spec} returned a ready Classifier; --weights, mean and std only apply when "
                "the factory returns an nn.Module"
            )
        _agree("input_shape", options.input_shape, tuple(built.input_shape), spec)
        _agree("num_classes", options.num_classes, built.num_classes, spec)
        return LoadedModel(built, f"{spec} ({built.kind})", None, built.kind)
    raise InputError(
        f"{spec}() returned {type(built).__name__}; expected a torch.nn.Module or a bastion "
        "Classifier"
    )


def _call_factory(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(
            f"cannot import {module_name!r} for --model {spec}: {exc}. Run bastion from the "
            "folder that holds it, or add that folder to PYTHONPATH"
        ) from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise InputError(f"{module_name} has no callable {attribute!r} (from --model {spec})")
    try:
        return factory()
    except Exception as exc:  # the user's code: report any failure as a bad model spec
        raise InputError(f"{spec}() raised {type(exc).__name__}: {exc}") from exc


def _load_weights(module: nn.Module, path: Path, spec: str) -> None:
    """Load a safetensors state dict into ``module`` with strict key and shape checks."""
    suffix = path.suffix.lower()
    if suffix != ".safetensors":
        if suffix in PICKLE_SUFFIXES | TORCHSCRIPT_SUFFIXES | {".bin", ".ckpt"}:
            raise UnsafeFileError(f"{path}: weights must be a .safetensors file. {PICKLE_ADVICE}")
        raise InputError(f"weights must be a .safetensors file, got {path}")
    if not path.is_file():
        raise InputError(f"weights file not found: {path}")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise InputError(f"{path} is not a valid safetensors file: {exc}") from exc
    _check_state_dict(module.state_dict(), state, path, spec)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(f"{path} does not fit {spec}: {exc}") from exc


def _check_state_dict(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], path: Path, spec: str
) -> None:
    problems = []
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = [
        f"{key} (file {tuple(found[key].shape)}, model {tuple(expected[key].shape)})"
        for key in expected
        if key in found and found[key].shape != expected[key].shape
    ]
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", mismatched)):  # fmt: skip
        if items:
            more = f" and {len(items) - 5} more" if len(items) > 5 else ""
            problems.append(f"{label}: {', '.join(items[:5])}{more}")
    if problems:
        raise InputError(
            f"{path} does not fit the module built by {spec}: {'; '.join(problems)}. Save the "
            "weights from the same architecture with "
            "safetensors.torch.save_file(model.state_dict(), path)"
        )


# --- torch modules ----------------------------------------------------------------------------


def _wrap_module(
    module: nn.Module, options: _Options, *, source: str, kind: str, probe: bool
) -> TorchClassifier:
    """A :class:`TorchClassifier`, with shapes from the arguments or the module's attributes.

    Every module gets one forward pass on zeros, so that a wrong input shape or a forward that fails is an
    ``InputError`` here; with ``probe``, an unknown ``num_classes`` is read from it.
    """
    declared_shape = getattr(module, "input_shape", None)
    input_shape = _agree(
        "input_shape",
        options.input_shape,
        None if declared_shape is None else tuple(int(d) for d in declared_shape),
        source,
    )
    if input_shape is None:
        raise InputError(
            f"{source}: the input shape is unknown; give the module an input_shape attribute or "
            "pass --input-shape (per sample, e.g. 1,28,28)"
        )
    declared_classes = getattr(module, "num_classes", None)
    num_classes = _agree(
        "num_classes",
        options.num_classes,
        None if declared_classes is None else int(declared_classes),
        source,
    )
    if num_classes is None and not probe:
        raise InputError(
            f"{source}: the number of classes is unknown; give the module a num_classes "
            "attribute or pass --num-classes"
        )
    outputs = _probe_num_classes(module, input_shape, source)
    if num_classes is not None and outputs != num_classes:
        raise InputError(f"{source} returns {outputs} logits per sample but num_classes is {num_classes}; "
                         "check --num-classes")
    num_classes = outputs
    for flag, values in (("--mean", options.mean), ("--std", options.std)):
        if values is not None:
            check_channel_values(values, input_shape, flag)
    module.eval()  # a loaded model answers queries; trainers switch it to training mode themselves
    return TorchClassifier(
        module, input_shape, num_classes,
        bounds=options.bounds, mean=options.mean, std=options.std, kind=kind,
    )  # fmt: skip


def _agree(name: str, given: Any, declared: Any, source: str) -> Any:
    """``given`` or ``declared``, whichever is set; an error when both are set and differ."""
    if given is not None and declared is not None and given != declared:
        raise InputError(f"{source} declares {name}={declared} but {name}={given} was passed")
    return given if given is not None else declared


def _probe_num_classes(module: nn.Module, input_shape: tuple[int, ...], source: str) -> int:
    """The number of logits ``module`` returns for one sample of zeros: a forward pass that also shows, at load
    time, a wrong input shape or a forward that fails (``InputError``), instead of a traceback mid-scan."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, *input_shape))
    except Exception as exc:  # the model's own forward: any failure means a wrong input shape
        raise InputError(
            f"{source}: a forward pass on zeros of shape {(1, *input_shape)} failed ({_last_line(exc)}); check "
            "--input-shape, or the model's forward"
        ) from exc
    finally:
        module.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"{source} returned {shape}; expected logits of shape (N, C)")
    return int(out.shape[1])


def _last_line(error: Exception) -> str:
    """``Type: message`` from the last non-empty line of ``error``'s message (TorchScript's errors carry the
    script's traceback first, and end with their own ``RuntimeError: ...``)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    kind = type(error).__name__
    return last if last.startswith(f"{kind}:") else f"{kind}: {last}"


# --- files ------------------------------------------------------------------------------------


def _load_torchscript(path: Path, options: _Options) -> LoadedModel:
    """A TorchScript archive as a white-box :class:`TorchClassifier` (``kind="torchscript"``).

    Only real TorchScript archives reach ``torch.jit.load``: it reads their pickles with
    TorchScript's own restricted unpickler (torch and TorchScript types only, no arbitrary Python
    callables) and runs their code in TorchScript's interpreter. Load models you trust anyway.
    """
    _require_torchscript(path)
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError or its own C++ errors
        raise InputError(f"torch.jit.load cannot read {path}: {exc}") from exc
    classifier = _wrap_module(module, options, source=str(path), kind="torchscript", probe=True)
    return LoadedModel(classifier, f"TorchScript {path}", file_digest(str(path)), "torchscript")


def _require_torchscript(path: Path) -> None:
    if not zipfile.is_zipfile(path):
        with path.open("rb") as handle:
            is_pickle = handle.read(1) == b"\x80"
        if is_pickle:
            raise UnsafeFileError(f"{path} is a legacy torch.save pickle. {PICKLE_ADVICE}")
        raise InputError(f"{path} is not a TorchScript archive (torch.jit.save writes a zip)")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if not _is_torchscript(names):
        raise UnsafeFileError(
            f"{path} is a torch.save checkpoint (a pickle inside a zip), not TorchScript. "
            f"{PICKLE_ADVICE}"
        )


def _is_torchscript(names: list[str]) -> bool:
    """True for the layout ``torch.jit.save`` writes: ``<root>/constants.pkl`` and ``<root>/code/``.

    ``torch.save`` checkpoints share the zip format and ``data.pkl`` but have no ``code/`` folder.
    """
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1:
        return False
    root = roots.pop()
    has_code = any(name.startswith(f"{root}/code/") for name in names)
    return has_code and f"{root}/constants.pkl" in names


def _load_onnx(path: Path, options: _Options) -> LoadedModel:
    from bastion.models.onnx_adapter import OnnxClassifier

    classifier = OnnxClassifier(
        path,
        input_shape=options.input_shape,
        num_classes=options.num_classes,
        bounds=options.bounds,
    )
    return LoadedModel(classifier, f"ONNX {path}", file_digest(str(path)), "onnx")


def _load_skops(path: Path, options: _Options) -> LoadedModel:
    """A ``.skops`` estimator; types outside scikit-learn, numpy and scipy are refused by name."""
    try:
        import skops.io as skops_io
    except ImportError as exc:
        raise InputError("skops files need skops: pip install 'bastion[sklearn]'") from exc
    from bastion.models.sklearn_adapter import SklearnClassifier
    from bastion.models.text_adapter import TextClassifier, is_text_estimator

    try:
        untrusted = skops_io.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises assorted errors for a corrupt archive
        raise InputError(f"{path} is not a valid skops file: {exc}") from exc
    refused = sorted(t for t in untrusted if t.split(".", 1)[0] not in TRUSTED_SKOPS_PACKAGES)
    if refused:
        raise UnsafeFileError(
            f"{path} contains types from outside scikit-learn, numpy and scipy: "
            f"{', '.join(refused)}. Loading them would import and run that code; re-export the "
            "model with standard scikit-learn components"
        )
    estimator = skops_io.load(path, trusted=untrusted)
    if is_text_estimator(estimator):  # strings in: served with BYTES inputs, not a tensor classifier
        return LoadedModel(TextClassifier(estimator), f"scikit-learn text {path}", file_digest(str(path)),
                           "sklearn-text")
    features = getattr(estimator, "n_features_in_", None)
    input_shape = options.input_shape or (None if features is None else (int(features),))
    if input_shape is None:
        raise InputError(f"{path}: the input shape is unknown; pass --input-shape")
    classifier = SklearnClassifier(estimator, input_shape=input_shape, bounds=options.bounds)
    _agree("num_classes", options.num_classes, classifier.num_classes, str(path))
    return LoadedModel(classifier, f"scikit-learn {path}", file_digest(str(path)), "sklearn")


def _load_manifest(path: Path, options: _Options) -> LoadedModel:
    """An ensemble manifest: each member loaded with the same shape, classes, bounds and normalisation."""

    def member(spec: str, weights: str | None) -> LoadedModel:
        return load_classifier(spec, weights=weights, input_shape=options.input_shape, num_classes=options.num_classes,
                               bounds=options.bounds, mean=options.mean, std=options.std)

    return load_ensemble(path, member)


def _load_remote(spec: str, weights: str | None, options: _Options, *, api_key: str | None, budget: int | None,
                 journal: str | Path | None) -> LoadedModel:
    """A :class:`RemoteClassifier` for an endpoint URL; the key comes from ``api_key`` or ``BASTION_API_KEY``."""
    if weights is not None or options.mean is not None or options.std is not None:
        raise InputError("--weights, mean and std do not apply to a remote endpoint: it serves its own model")
    from bastion.models.remote import RemoteClassifier

    classifier = RemoteClassifier(
        spec,
        input_shape=options.input_shape,
        num_classes=options.num_classes,
        bounds=options.bounds,
        api_key=api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None,
        budget=budget,
        journal=journal,
    )
    description = f"remote endpoint {classifier.endpoint.infer_url} ({classifier.access})"
    return LoadedModel(classifier, description, None, "remote")


_FILE_LOADERS: dict[str, Callable[[Path, _Options], LoadedModel]] = {
    **{suffix: _load_torchscript for suffix in TORCHSCRIPT_SUFFIXES},
    ".onnx": _load_onnx,
    ".skops": _load_skops,
}
