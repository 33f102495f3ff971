"""Open Inference Protocol v2 as the remote classifier speaks it: URLs, metadata, requests and answer checks.

No HTTP here (that is :mod:`bastion.models.remote`). Paths, as KServe, Triton and bastion's gateway
serve them: ``GET {base}/v2/models/{name}[/versions/{version}]`` answers the model's metadata,
``POST .../infer`` answers an inference request. Tensors travel as JSON: a ``shape``, a
``datatype`` (``FP32``, ``INT64``, ...) and their values flattened in row-major order in ``data``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import numpy as np

from bastion.core.errors import InputError, RemoteError

#: What an answer holds: ``"scores"`` ``(N, C)`` or ``"labels"`` ``(N,)``.
AnswerKind = Literal["scores", "labels"]

#: Input datatypes bastion can send, with the NumPy dtype the values are rounded to first.
INPUT_DATATYPES: dict[str, type[np.floating]] = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
SCORE_DATATYPES = frozenset({"FP16", "BF16", "FP32", "FP64"})
LABEL_DATATYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
#: Characters of an answer quoted in an error message.
EXCERPT_CHARS = 200
#: Tolerance on a row's sum when telling probabilities from logits.
PROBABILITY_SUM_TOLERANCE = 1e-3

_MODEL_PATH = re.compile(r"^(?P<prefix>.*?)/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?:/infer)?/?$")


@dataclass(frozen=True)
class Endpoint:
    """A served model: ``base`` (``scheme://host[:port][/prefix]``), the model's ``name`` and optional ``version``."""

    base: str
    name: str
    version: str | None = None

    @property
    def model_url(self) -> str:
        """The URL answering the model's metadata (``GET``)."""
        url = f"{self.base}/v2/models/{quote(self.name, safe='')}"
        return url if self.version is None else f"{url}/versions/{quote(self.version, safe='')}"

    @property
    def infer_url(self) -> str:
        """The URL answering inference requests (``POST``)."""
        return f"{self.model_url}/infer"


def parse_endpoint(url: str, model_name: str | None = None, model_version: str | None = None) -> Endpoint:
    """The endpoint ``url`` names: ``https://host/v2/models/NAME[/versions/V][/infer]``, or a base and ``model_name``.

    Raises:
        InputError: not http(s), credentials or a query string in the URL (they would leak into logs
            and reports: pass an API key instead), no model name, or a name that contradicts the URL.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"not an http(s) endpoint URL: {url!r}; expected https://host/v2/models/NAME")
    if parts.username or parts.password or parts.query or parts.fragment:
        # The URL is not echoed: whatever sits there may be a secret.
        raise InputError("the endpoint URL holds credentials or a query string, which would end up in logs and "
                         "reports; give the bare https://host/v2/models/NAME and pass the key as api_key "
                         "(or BASTION_API_KEY)")
    match = _MODEL_PATH.match(parts.path)
    if match is None:
        if model_name is None:
            raise InputError(f"{url} names no model; use https://host/v2/models/NAME or pass model_name")
        name, version, prefix = model_name, model_version, parts.path.rstrip("/")
    else:
        name, prefix = unquote(match["name"]), match["prefix"]
        version = None if match["version"] is None else unquote(match["version"])
        if model_name is not None and model_name != name:
            raise InputError(f"{url} names model {name!r} but model_name={model_name!r}")
        if model_version is not None and version is not None and model_version != version:
            raise InputError(f"{url} names version {version!r} but model_version={model_version!r}")
        version = version if version is not None else model_version
    if not name:
        raise InputError(f"empty model name in {url}")
    return Endpoint(f"{parts.scheme}://{parts.netloc}{prefix}", name, version)


@dataclass(frozen=True)
class TensorSpec:
    """One input or output in the model's metadata; ``-1`` in ``shape`` is a variable dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]


def parse_metadata(body: Any, url: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The ``(inputs, outputs)`` a model-metadata answer declares.

    Raises:
        RemoteError: the answer is not OIP v2 model metadata.
    """
    if not isinstance(body, dict):
        raise RemoteError(f"{url} answered model metadata that is not a JSON object", url=url, status=200)
    return _tensor_specs(body.get("inputs"), "inputs", url), _tensor_specs(body.get("outputs"), "outputs", url)


def _tensor_specs(items: Any, field: str, url: str) -> list[TensorSpec]:
    if not isinstance(items, list) or not items:
        raise RemoteError(f"the model metadata from {url} has no {field} list", url=url, status=200)
    specs = []
    for item in items:
        shape = item.get("shape") if isinstance(item, dict) else None
        if not (isinstance(shape, list) and all(_is_int(d) for d in shape)
                and isinstance(item.get("name"), str) and isinstance(item.get("datatype"), str)):
            raise RemoteError(f"the model metadata from {url} has an entry in {field} without a name, a datatype "
                              f"and an integer shape: {_json_excerpt(item)}", url=url, status=200)
        specs.append(TensorSpec(item["name"], item["datatype"].upper(), tuple(shape)))
    return specs


def choose_input(inputs: list[TensorSpec], wanted: str | None, url: str) -> TensorSpec:
    """The input named ``wanted``, else the model's only input."""
    if wanted is not None:
        for spec in inputs:
            if spec.name == wanted:
                return spec
        raise InputError(f"{url} has no input {wanted!r}; its inputs are {_names(inputs)}")
    if len(inputs) != 1:
        raise InputError(f"{url} has {len(inputs)} inputs ({_names(inputs)}); pass input_name to choose one")
    return inputs[0]


def choose_output(outputs: list[TensorSpec], wanted: str | None, url: str) -> TensorSpec:
    """The output named ``wanted``, else the first float ``[N, C]`` output, else the first integer ``[N]`` one."""
    if wanted is not None:
        for spec in outputs:
            if spec.name == wanted:
                return spec
        raise InputError(f"{url} has no output {wanted!r}; its outputs are {_names(outputs)}")
    scores = [o for o in outputs if o.datatype in SCORE_DATATYPES and len(o.shape) == 2]
    labels = [o for o in outputs if o.datatype in LABEL_DATATYPES and len(o.shape) in (1, 2)]
    if not scores and not labels:
        found = ", ".join(f"{o.name} {o.datatype} {list(o.shape)}" for o in outputs)
        raise InputError(f"{url}: no output looks like scores (float, [N, C]) or labels (int, [N]); outputs are "
                         f"{found}. Choose one with output=NAME")
    return (scores or labels)[0]


def answer_kind(datatype: str) -> AnswerKind | None:
    """``"scores"`` for a float datatype, ``"labels"`` for an integer one, ``None`` otherwise."""
    if datatype in SCORE_DATATYPES:
        return "scores"
    return "labels" if datatype in LABEL_DATATYPES else None


def infer_request(rows: np.ndarray, *, input_name: str, datatype: str, output_name: str | None) -> dict[str, Any]:
    """The JSON body asking for ``rows`` ``(n, *input_shape)``; names the output wanted when ``output_name`` is set."""
    body: dict[str, Any] = {"inputs": [{"name": input_name, "shape": list(rows.shape), "datatype": datatype,
                                        "data": rows.reshape(-1).tolist()}]}
    if output_name is not None:
        body["outputs"] = [{"name": output_name}]
    return body


def decode_answer(body: Any, *, output_name: str | None, count: int, num_classes: int,
                  url: str) -> tuple[AnswerKind, np.ndarray]:
    """The checked output of an inference answer for ``count`` samples.

    Returns:
        ``("scores", (count, C) float64)`` or ``("labels", (count,) int64)``.

    Raises:
        RemoteError: no outputs, an unknown datatype, data that are not finite numbers, or a shape other
            than ``[count, C]`` (scores) or ``[count]`` (labels in ``0 .. C-1``). Nothing is guessed.
    """
    outputs = body.get("outputs") if isinstance(body, dict) else None
    if not isinstance(outputs, list) or not outputs or not all(isinstance(o, dict) for o in outputs):
        raise _malformed(url, f"no outputs list in {_json_excerpt(body)}")
    named = [o for o in outputs if o.get("name") == output_name]
    if output_name is not None and not named and len(outputs) > 1:
        raise _malformed(url, f"no output {output_name!r} among {[o.get('name') for o in outputs]}")
    output = (named or outputs)[0]
    datatype = str(output.get("datatype", "")).upper()
    kind = answer_kind(datatype)
    if kind is None:
        raise _malformed(url, f"output datatype {datatype or 'missing'}; expected scores (FP16/FP32/FP64) or "
                              "labels (INT*)")
    shape, data = output.get("shape"), output.get("data")
    if not isinstance(shape, list) or not all(_is_int(d) for d in shape):
        raise _malformed(url, f"output shape {shape!r} is not a list of integers")
    try:
        values = np.asarray(data) if isinstance(data, list) else None
    except ValueError:  # ragged nested lists
        values = None
    if values is None or values.dtype.kind not in "iuf":
        raise _malformed(url, f"output data are not a list of numbers: {_json_excerpt(data)}")
    if values.size != math.prod(shape):
        raise _malformed(url, f"output shape {shape} does not fit its {values.size} values")
    values = values.astype(np.float64).reshape(shape)
    if not np.isfinite(values).all():
        raise _malformed(url, "NaN or infinite scores")
    if kind == "scores":
        if values.shape != (count, num_classes):
            raise _malformed(url, f"scores of shape {shape} for {count} samples; expected [{count}, {num_classes}] "
                                  f"({num_classes} classes)")
        return "scores", values
    labels = values.reshape(-1) if values.ndim == 2 and values.shape[1] == 1 else values
    if labels.shape != (count,):
        raise _malformed(url, f"labels of shape {shape} for {count} samples; expected [{count}]")
    if not np.array_equal(labels, np.round(labels)) or (count and not 0 <= labels.min() <= labels.max() < num_classes):
        raise _malformed(url, f"labels outside 0..{num_classes - 1} or not whole numbers")
    return "labels", labels.astype(np.int64)


def looks_like_probabilities(scores: np.ndarray) -> bool:
    """True when every row of ``scores`` ``(n, C)`` lies in [0, 1] and sums to 1 (within 1e-3)."""
    if not len(scores):
        return False
    sums = scores.sum(axis=1)
    return bool(scores.min() >= 0 and scores.max() <= 1 + 1e-6
                and np.abs(sums - 1).max() <= PROBABILITY_SUM_TOLERANCE)


def excerpt(text: str, secret: str | None = None) -> str:
    """The start of ``text`` on one line, at most ``EXCERPT_CHARS`` characters, with ``secret`` blanked out."""
    if secret:
        text = text.replace(secret, "<redacted>")
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[:EXCERPT_CHARS] + "..."


def _json_excerpt(value: Any) -> str:
    return excerpt(repr(value))


def _malformed(url: str, problem: str) -> RemoteError:
    return RemoteError(f"{url} gave a malformed inference answer: {problem}. No score was taken from it; check that "
                       "the endpoint serves this model", url=url, status=200)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _names(specs: list[TensorSpec]) -> str:
    return ", ".join(repr(s.name) for s in specs)
