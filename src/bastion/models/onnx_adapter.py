"""Adapter for an ONNX model run by onnxruntime on the CPU: a black-box classifier, no gradients."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from bastion.core.errors import InputError
from bastion.core.threat import Access
from bastion.models.base import ModelInput, as_input

ScoreKind = Literal["logits", "probabilities", "labels"]

_FLOAT_TYPES: dict[str, type[np.floating]] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
}
_LABEL_TYPES = frozenset({"tensor(int64)", "tensor(int32)"})
_PROBABILITY_OPS = frozenset({"Softmax"})


class OnnxClassifier:
    """A classifier that runs an ``.onnx`` file with onnxruntime's CPU provider.

    Args:
        path: the ``.onnx`` file. It must have one input ``(N, *input_shape)``.
        input_shape: per-sample shape; read from the graph when its dimensions are fixed, required
            otherwise. The batch dimension may be dynamic or fixed (inputs are then fed in chunks).
        num_classes: ``C``; read from the graph, else found by running one batch of zeros.
            Required when the model only outputs labels.
        bounds: valid input range, default ``(0, 1)``. Normalisation must be inside the graph.
        output: name of the graph output to read, or ``"auto"`` (default): the first floating
            ``(N, C)`` output, else the first integer ``(N,)`` label output.

    ``access`` is ``"scores"`` for a floating output and ``"labels"`` for a label output.
    Probabilities (a ``Softmax`` output, or an output whose name mentions ``prob``) are turned into
    log-probabilities, so :meth:`logits` always returns logit-like scores; ``score_kind`` records
    which the graph gave. Outputs are on the input's device and dtype and carry no gradients.
    """

    kind = "onnx"

    def __init__(
        self,
        path: str | Path,
        *,
        input_shape: Sequence[int] | None = None,
        num_classes: int | None = None,
        bounds: tuple[float, float] = (0.0, 1.0),
        output: str = "auto",
    ) -> None:
        self.path = Path(path)
        self._session = _open_session(self.path)
        model_input = _single_input(self._session, self.path)
        self._input_name: str = model_input.name
        self._input_dtype = _FLOAT_TYPES.get(model_input.type)
        if self._input_dtype is None:
            raise InputError(f"{self.path}: input has type {model_input.type}; expected float")
        dims = list(model_input.shape or [])
        self._batch_size = dims[0] if dims and isinstance(dims[0], int) and dims[0] > 0 else None
        self.input_shape = _resolve_input_shape(dims, input_shape, self.path)
        self._output_name, self.score_kind = _select_output(self._session, self.path, output)
        self.access: Access = "labels" if self.score_kind == "labels" else "scores"
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.num_classes = self._resolve_num_classes(num_classes)

    def logits(self, x: ModelInput) -> torch.Tensor:
        """Scores ``(N, C)`` for ``x`` of shape ``(N, *input_shape)`` (a tensor or a NumPy array); one-hot for label
        outputs."""
        x = as_input(x, "logits")
        if tuple(x.shape[1:]) != self.input_shape:
            raise InputError(
                f"input has per-sample shape {tuple(x.shape[1:])}; the ONNX model expects "
                f"{self.input_shape}"
            )
        array = x.detach().cpu().numpy().astype(self._input_dtype, copy=False)
        outputs = [self._run(array[i : i + self._chunk]) for i in range(0, len(array), self._chunk)]
        raw = np.concatenate(outputs) if outputs else np.zeros((0, self.num_classes))
        dtype = x.dtype if x.dtype.is_floating_point else torch.float32
        return torch.from_numpy(self._to_scores(raw)).to(device=x.device, dtype=dtype)

    def predict(self, x: ModelInput) -> torch.Tensor:
        """Labels ``(N,)`` int64 for a tensor or a NumPy array (see :func:`~bastion.models.base.as_input`)."""
        return self.logits(as_input(x, "predict")).argmax(dim=1)

    @property
    def _chunk(self) -> int:
        return self._batch_size or 1024

    def _run(self, batch: np.ndarray) -> np.ndarray:
        count = len(batch)
        if self._batch_size is not None and count < self._batch_size:
            padding = np.zeros((self._batch_size - count, *batch.shape[1:]), dtype=batch.dtype)
            batch = np.concatenate([batch, padding])
        (out,) = self._session.run([self._output_name], {self._input_name: batch})
        return np.asarray(out)[:count]

    def _to_scores(self, raw: np.ndarray) -> np.ndarray:
        if self.score_kind == "labels":
            labels = raw.reshape(-1).astype(np.int64)
            if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise InputError(
                    f"{self.path}: model returned labels outside 0..{self.num_classes - 1}"
                )
            return np.eye(self.num_classes, dtype=np.float32)[labels]
        if raw.ndim != 2 or raw.shape[1] != self.num_classes:
            raise InputError(
                f"{self.path}: output {self._output_name!r} has shape {raw.shape}; expected "
                f"(N, {self.num_classes})"
            )
        if self.score_kind == "probabilities":
            return np.log(np.clip(raw.astype(np.float32), 1e-12, None))
        return raw.astype(np.float32, copy=False)

    def _resolve_num_classes(self, given: int | None) -> int:
        declared = next(o.shape for o in self._session.get_outputs() if o.name == self._output_name)
        from_graph = None
        if self.score_kind != "labels" and declared and len(declared) == 2:
            from_graph = declared[1] if isinstance(declared[1], int) else None
        if from_graph is None and given is None:
            if self.score_kind == "labels":
                raise InputError(f"{self.path} outputs labels only; pass num_classes")
            probe = np.zeros((1, *self.input_shape), dtype=self._input_dtype)
            from_graph = int(self._run(probe).reshape(1, -1).shape[1])
        if from_graph is not None and given is not None and from_graph != given:
            raise InputError(f"{self.path} outputs {from_graph} classes but num_classes={given}")
        classes = int(given if given is not None else from_graph)  # type: ignore[arg-type]
        if classes < 2:
            raise InputError(f"{self.path}: a classifier needs at least 2 classes, got {classes}")
        return classes


def _open_session(path: Path) -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise InputError("ONNX models need onnxruntime: pip install 'bastion[onnx]'") from exc
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
        raise InputError(f"onnxruntime cannot load {path}: {exc}") from exc


def _single_input(session: Any, path: Path) -> Any:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise InputError(f"{path} has {len(inputs)} inputs ({names}); bastion needs exactly one")
    return inputs[0]


def _resolve_input_shape(
    dims: list[Any], given: Sequence[int] | None, path: Path
) -> tuple[int, ...]:
    """Per-sample shape from the graph's input dims (batch first) and/or the caller's value."""
    sample_dims = dims[1:]
    fixed = bool(sample_dims) and all(isinstance(d, int) and d > 0 for d in sample_dims)
    if given is None:
        if not fixed:
            raise InputError(
                f"{path}: the input shape {dims} has unknown dimensions; pass input_shape "
                "(per sample, e.g. 1,28,28)"
            )
        return tuple(int(d) for d in sample_dims)
    shape = tuple(int(d) for d in given)
    if sample_dims:
        clash = len(shape) != len(sample_dims) or any(
            isinstance(d, int) and d > 0 and d != s
            for d, s in zip(sample_dims, shape, strict=False)
        )
        if clash:
            raise InputError(f"{path} expects inputs {dims} (batch first); input_shape={shape}")
    return shape


def _select_output(session: Any, path: Path, wanted: str) -> tuple[str, ScoreKind]:
    outputs = session.get_outputs()
    if wanted != "auto":
        chosen = [o for o in outputs if o.name == wanted]
        if not chosen:
            names = ", ".join(o.name for o in outputs)
            raise InputError(f"{path} has no output {wanted!r}; outputs are {names}")
        return wanted, _score_kind(chosen[0], path)
    scores = [o for o in outputs if o.type in _FLOAT_TYPES and len(o.shape or []) == 2]
    labels = [o for o in outputs if o.type in _LABEL_TYPES and len(o.shape or []) == 1]
    if not scores and not labels:
        found = ", ".join(f"{o.name} {o.type} {o.shape}" for o in outputs)
        raise InputError(
            f"{path}: no output looks like scores (float, (N, C)) or labels (int, (N,)); "
            f"outputs are {found}. Choose one with output=NAME"
        )
    chosen_output = (scores or labels)[0]
    return chosen_output.name, _score_kind(chosen_output, path)


def _score_kind(output: Any, path: Path) -> ScoreKind:
    if output.type in _LABEL_TYPES:
        return "labels"
    if output.type not in _FLOAT_TYPES:
        raise InputError(f"{path}: output {output.name!r} has type {output.type}; expected scores")
    if "prob" in output.name.lower() or _produced_by(path, output.name) in _PROBABILITY_OPS:
        return "probabilities"
    return "logits"


def _produced_by(path: Path, output_name: str) -> str | None:
    """The op type of the node that writes ``output_name`` (``None`` without the onnx package)."""
    try:
        import onnx
    except ImportError:
        return None
    graph = onnx.load(str(path), load_external_data=False).graph
    for node in graph.node:
        if output_name in node.output:
            return str(node.op_type)
    return None
