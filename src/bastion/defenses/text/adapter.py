"""Low-rank adapters that fine-tune the sentence encoder for the text guard's contextual layer.

all-MiniLM-L6-v2 embeds what a text is about, so an injection and a harmless request on the same topic land
close together, and a logistic regression on frozen embeddings generalises poorly to phrasings it never saw.
An adapter (LoRA, Hu et al. 2021) adds a trainable low-rank term ``scale * B @ A`` to each of the six linear
maps of every encoder layer; :func:`fit_adapter` trains it in torch, with a linear head on the sentence
embedding, to tell injections from benign texts. The encoder's own weights stay frozen, so an adapter of rank 8
is 331,776 numbers (1.3 MB) where the encoder is 22.7 million. The shipped one is a "soup" of three such adapters
trained with different seeds (:func:`average_adapters`): one of rank 24, 995,328 numbers.

At scoring time the adapter is merged into the NumPy/ONNX encoder's weights once, when the model loads
(:func:`bastion.defenses.text.embedding.load_model`): an adapted forward pass costs what a plain one costs.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bastion.core.errors import InputError

logger = logging.getLogger(__name__)

FILE_FORMAT = "bastion/encoder-adapter"
#: The linear maps of a BERT layer an adapter may change, by the name used here, and their weights' names in the
#: model file (``encoder.layer.<i>.<name>.weight``, shape ``(out, in)``).
LINEARS = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
           "attention_out": "attention.output.dense", "intermediate": "intermediate.dense",
           "output": "output.dense"}
#: Sentence embeddings have unit length; the training head reads them multiplied by this, so that its logits
#: can reach useful sizes without large weights.
HEAD_SCALE = 10.0
_WARMUP_STEPS = 30


@dataclass(frozen=True)
class AdapterSettings:
    """How :func:`fit_adapter` trains: rank and ``alpha`` of the low-rank terms (scale ``alpha / rank``), passes
    over the data, AdamW's learning rate for the adapter (the head's is 1e-2), texts per step, tokens kept per
    text (texts are cut to their first ``max_tokens``), the share of each text's tokens replaced by [MASK] afresh
    at every step (``mask_rate``, a regulariser against learning the corpus's templates word for word; [CLS] and
    [SEP] are kept; measured at 0.15 and not adopted, see RESULTS.md), the seed, torch threads (``None``:
    torch's setting), ``soup``: how many adapters are trained, with seeds ``seed``, ``seed + 1``, ...,
    and averaged into one (:func:`average_adapters`; each training takes the full time), and ``interpolation``:
    the share of the (averaged) trained change kept, in (0, 1]: 1 keeps it whole, 0.5 puts the encoder halfway
    between the published one and the fine-tuned one (weight-space interpolation, "WiSE-FT", Wortsman et al.
    2022; :func:`interpolated`).

    The defaults are the shipped adapter's.
    """

    rank: int = 8
    alpha: float = 16.0
    epochs: int = 2
    learning_rate: float = 5e-4
    batch_size: int = 16
    max_tokens: int = 128
    mask_rate: float = 0.0
    seed: int = 0
    threads: int | None = None
    soup: int = 3
    interpolation: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if not (isinstance(self.rank, int) and 1 <= self.rank <= 64):
            problems.append(f"rank must be an integer from 1 to 64, got {self.rank!r}")
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            problems.append(f"epochs must be a positive integer, got {self.epochs!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            problems.append(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not (isinstance(self.max_tokens, int) and 8 <= self.max_tokens <= 512):
            problems.append(f"max_tokens must be an integer from 8 to 512, got {self.max_tokens!r}")
        for name in ("alpha", "learning_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a positive number, got {value!r}")
        if not (isinstance(self.mask_rate, (int, float)) and 0.0 <= self.mask_rate < 1.0):
            problems.append(f"mask_rate must be a number from 0 up to 1 (not included), got {self.mask_rate!r}")
        if not (isinstance(self.soup, int) and not isinstance(self.soup, bool) and 1 <= self.soup <= 8):
            problems.append(f"soup must be an integer from 1 to 8, got {self.soup!r}")
        if not (isinstance(self.interpolation, (int, float)) and not isinstance(self.interpolation, bool)
                and 0.0 < self.interpolation <= 1.0):
            problems.append(f"interpolation must be a number above 0 and at most 1, got {self.interpolation!r}")
        if self.threads is not None and not (isinstance(self.threads, int) and self.threads >= 1):
            problems.append(f"threads must be a positive integer or None, got {self.threads!r}")
        if problems:
            raise InputError("bad adapter settings: " + "; ".join(problems))

    def as_record(self) -> dict[str, Any]:
        """The settings that shape the adapter, for the classifier file; with the torch version and the threads
        it trained on (torch's sums, and so the adapter's last bits, depend on both)."""
        import torch

        return {"rank": self.rank, "alpha": self.alpha, "epochs": self.epochs, "learning_rate": self.learning_rate,
                "batch_size": self.batch_size, "max_tokens": self.max_tokens, "mask_rate": self.mask_rate,
                "seed": self.seed, "soup": self.soup,
                "soup_seeds": list(range(self.seed, self.seed + self.soup)), "interpolation": self.interpolation,
                "linears": list(LINEARS), "head_scale": HEAD_SCALE, "torch": torch.__version__,
                "threads": self.threads or torch.get_num_threads()}


@dataclass(frozen=True, eq=False)
class EncoderAdapter:
    """A fitted adapter: for each changed linear map ``"<layer>.<name>"`` (``name`` in :data:`LINEARS`), the
    factors ``A`` ``(rank, in)`` and ``B`` ``(out, rank)``, float32 and read-only; the map's weight ``W``
    ``(out, in)`` becomes ``W + (alpha / rank) * B @ A``. ``digest`` identifies the adapter (the encoder caches
    merged models by it).

    Raises:
        InputError: a rank under 1, an alpha that is not a positive finite number, a factor that is not finite,
            of the wrong shape, or named for no linear map.
    """

    rank: int
    alpha: float
    factors: dict[str, tuple[np.ndarray, np.ndarray]]
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.rank, int) and self.rank >= 1):
            raise InputError(f"an adapter's rank must be a positive integer, got {self.rank!r}")
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and self.alpha > 0):
            raise InputError(f"an adapter's alpha must be a positive finite number, got {self.alpha!r}")
        object.__setattr__(self, "alpha", float(self.alpha))
        hasher = hashlib.sha256(f"{self.rank}:{self.alpha!r}".encode())
        factors = {}
        for name in sorted(self.factors):
            layer, _, linear = name.partition(".")
            if not layer.isdigit() or linear not in LINEARS:
                raise InputError(f"adapter factors named {name!r}: expected '<layer>.<map>' with a map of "
                                 f"{', '.join(LINEARS)}")
            a, b = (_frozen(array, name) for array in self.factors[name])
            if a.ndim != 2 or b.ndim != 2 or a.shape[0] != self.rank or b.shape[1] != self.rank:
                raise InputError(f"adapter factors of {name} have shapes {a.shape} and {b.shape}; expected "
                                 f"(rank, in) and (out, rank) with rank {self.rank}")
            factors[name] = (a, b)
            hasher.update(f"{name}:{a.shape}:{b.shape}".encode())
            hasher.update(a.tobytes())
            hasher.update(b.tobytes())
        object.__setattr__(self, "factors", factors)
        object.__setattr__(self, "digest", hasher.hexdigest())

    def layers(self) -> set[int]:
        """The layer indices the adapter changes."""
        return {int(name.partition(".")[0]) for name in self.factors}

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def delta(self, layer: int, name: str) -> np.ndarray | None:
        """The change ``(out, in)`` to linear map ``name`` of layer ``layer``, or ``None`` where it is unchanged."""
        factors = self.factors.get(f"{layer}.{name}")
        if factors is None:
            return None
        a, b = factors  # float32, as __post_init__ made them
        return np.float32(self.scale) * (b @ a)

    def to_bytes(self) -> bytes:
        """The adapter as a safetensors file's bytes (``<layer>.<name>.A`` / ``.B`` tensors, rank and alpha in the
        metadata)."""
        from safetensors.numpy import save

        tensors = {}
        for name, (a, b) in self.factors.items():
            tensors[f"{name}.A"] = np.ascontiguousarray(a, dtype=np.float32)
            tensors[f"{name}.B"] = np.ascontiguousarray(b, dtype=np.float32)
        return save(tensors, metadata={"format": FILE_FORMAT, "rank": str(self.rank), "alpha": repr(self.alpha)})

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> EncoderAdapter:
        """An adapter from :meth:`to_bytes`'s bytes.

        Raises:
            InputError: ``data`` is not an adapter file (``where`` names it in the message).
        """
        from safetensors import SafetensorError
        from safetensors.numpy import load

        try:
            tensors = load(data)
            metadata = _metadata(data)
        except (SafetensorError, ValueError, OSError) as error:
            raise InputError(f"{where} is not a safetensors file: {error}") from error
        if metadata.get("format") != FILE_FORMAT:
            raise InputError(f"{where} is not a bastion encoder adapter (metadata format {metadata.get('format')!r})")
        try:
            rank, alpha = int(metadata["rank"]), float(metadata["alpha"])
        except (KeyError, ValueError) as error:
            raise InputError(f"{where} lacks a valid rank and alpha in its metadata") from error
        names = {key.rsplit(".", 1)[0] for key in tensors}
        unpaired = sorted(name for name in names if f"{name}.A" not in tensors or f"{name}.B" not in tensors)
        if unpaired or not names:
            raise InputError(f"{where} holds no adapter factors, or factors without their pair: {unpaired}")
        return cls(rank, alpha, {name: (tensors[f"{name}.A"], tensors[f"{name}.B"]) for name in sorted(names)})

    def save(self, path: str | Path) -> Path:
        """Write the adapter to ``path`` (safetensors); returns the path."""
        path = Path(path)
        try:
            path.write_bytes(self.to_bytes())
        except OSError as error:
            raise InputError(f"cannot write adapter file {path}: {error.strerror or error}") from error
        return path

    @classmethod
    def load(cls, path: str | Path) -> EncoderAdapter:
        """An adapter written by :meth:`save`.

        Raises:
            InputError: the file is missing or not an adapter file.
        """
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise InputError(f"cannot read adapter file {path}: {error.strerror or error}") from error
        return cls.from_bytes(data, str(path))


def _frozen(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` as a read-only float32 copy; refuses non-float or non-finite values."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"adapter factors of {name} must be floating-point numbers, got {array.dtype}")
    array = np.array(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise InputError(f"adapter factors of {name} hold NaN or infinite values")
    array.flags.writeable = False
    return array


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of safetensors bytes (the header is 8 bytes of length, then JSON)."""
    import json

    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8: 8 + length])
    return dict(header.get("__metadata__") or {})


def fit_adapter(sequences: Sequence[Sequence[int]], labels: Sequence[int],
                settings: AdapterSettings | None = None) -> EncoderAdapter:
    """Train an adapter so that the encoder's sentence embeddings separate ``labels`` (1 = injection).

    ``sequences``: token ids of each text with [CLS] and [SEP] (``_MiniLM.tokenize``), cut here to
    ``settings.max_tokens``. A linear head on the unit-length mean-pooled embedding (times :data:`HEAD_SCALE`) is
    trained with it by binary cross-entropy, the positives weighted by negatives / positives, AdamW (weight decay
    0.01), a 30-step warm-up and a linear decay to zero; texts are batched by length. The head is discarded: the
    guard fits its own logistic regression on the adapted embeddings. With ``settings.soup`` above 1, that many
    adapters are trained (seeds ``settings.seed`` onwards) and averaged (:func:`average_adapters`); the result
    keeps ``settings.interpolation`` of its change (:func:`interpolated`). Deterministic
    for a given seed and thread count; torch's global random state and thread count are restored afterwards.

    Raises:
        InputError: sequences and labels do not match, a class is missing, a sequence is empty, or the training
            diverges (a loss that is not finite).
        CapabilityError: the embedding model is not installed.
    """
    import torch

    settings = settings or AdapterSettings()
    labels_array = np.asarray(labels)
    if labels_array.shape != (len(sequences),) or not np.isin(labels_array, (0, 1)).all():
        raise InputError(f"need one label (0 or 1) per sequence: {len(sequences)} sequences, labels of shape "
                         f"{labels_array.shape}")
    if len(np.unique(labels_array)) < 2:
        raise InputError("training an adapter needs both labels: some injections (1) and some benign texts (0)")
    cut = [_cut(list(sequence), settings.max_tokens) for sequence in sequences]
    if any(len(sequence) < 2 for sequence in cut):
        raise InputError("every sequence needs at least [CLS] and [SEP]")
    previous_threads = torch.get_num_threads()
    try:
        if settings.threads is not None:
            torch.set_num_threads(settings.threads)
        adapters = []
        for seed in range(settings.seed, settings.seed + settings.soup):
            if settings.soup > 1:
                logger.info("adapter %d of a soup of %d (seed %d)", seed - settings.seed + 1, settings.soup, seed)
            with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
                torch.manual_seed(seed)
                encoder = _torch_encoder(settings.rank, settings.alpha)
                _train(encoder, cut, labels_array, replace(settings, seed=seed))
            adapters.append(encoder.adapter())
        return interpolated(average_adapters(adapters), settings.interpolation)
    finally:
        torch.set_num_threads(previous_threads)


def average_adapters(adapters: Sequence[EncoderAdapter]) -> EncoderAdapter:
    """One adapter whose change to every linear map is the mean of ``adapters``' changes (a uniform "model soup",
    Wortsman et al. 2022, of fine-tunings that share the pretrained start): of rank ``k * rank`` for ``k``
    adapters, its factors the ``A`` stacked ``(k * rank, in)`` and the ``B`` side by side, divided by ``k``
    ``(out, k * rank)``, and ``alpha`` times ``k`` (so the scale ``alpha / rank`` is kept). One adapter is
    returned as it is.

    Raises:
        InputError: no adapters, or adapters of different ranks, alphas or linear maps.
    """
    if not adapters:
        raise InputError("average_adapters needs at least one adapter")
    first = adapters[0]
    if len(adapters) == 1:
        return first
    for index, other in enumerate(adapters[1:], start=1):
        if (other.rank, other.alpha, set(other.factors)) != (first.rank, first.alpha, set(first.factors)):
            maps = sorted(set(first.factors) ^ set(other.factors))
            raise InputError(f"adapters averaged must share their rank, alpha and linear maps; adapter {index} has "
                             f"rank {other.rank} and alpha {other.alpha} against {first.rank} and {first.alpha}"
                             + (f", and differs in the maps {maps}" if maps else ""))
    count = len(adapters)
    factors = {name: (np.concatenate([adapter.factors[name][0] for adapter in adapters], axis=0),
                      np.concatenate([adapter.factors[name][1] for adapter in adapters], axis=1) / count)
               for name in first.factors}
    return EncoderAdapter(first.rank * count, first.alpha * count, factors)


def interpolated(adapter: EncoderAdapter, share: float) -> EncoderAdapter:
    """``adapter`` keeping ``share`` (in (0, 1]) of its change to every linear map: the encoder it makes is
    ``W + share * (alpha / rank) * B @ A``, the published encoder's weights moved that share of the way to the
    fine-tuned ones (weight-space interpolation, Wortsman et al. 2022, "Robust fine-tuning of zero-shot
    models"). Only ``alpha`` changes; a share of 1 returns ``adapter`` itself.

    Raises:
        InputError: a share that is not a number above 0 and at most 1.
    """
    if not (isinstance(share, (int, float)) and not isinstance(share, bool) and 0.0 < share <= 1.0):
        raise InputError(f"an adapter's interpolation share must be a number above 0 and at most 1, got {share!r}")
    if share == 1.0:
        return adapter
    return EncoderAdapter(adapter.rank, adapter.alpha * share, adapter.factors)


def _cut(sequence: list[int], max_tokens: int) -> list[int]:
    return sequence if len(sequence) <= max_tokens else sequence[: max_tokens - 1] + [sequence[-1]]


def _train(encoder: Any, sequences: list[list[int]], labels: np.ndarray, settings: AdapterSettings) -> None:
    import torch
    import torch.nn.functional as F

    head = torch.nn.Linear(encoder.width, 1)
    optimiser = torch.optim.AdamW([{"params": encoder.trainable(), "lr": settings.learning_rate},
                                   {"params": head.parameters(), "lr": 1e-2}], weight_decay=0.01)
    by_length = np.argsort([len(sequence) for sequence in sequences], kind="stable")
    batches = [by_length[i: i + settings.batch_size] for i in range(0, len(by_length), settings.batch_size)]
    total = settings.epochs * len(batches)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / _WARMUP_STEPS) * max(0.0, 1.0 - step / total))
    positive_weight = torch.tensor(float((labels == 0).sum() / (labels == 1).sum()))
    mask_id = _mask_token_id() if settings.mask_rate else 0
    rng = np.random.default_rng(settings.seed)
    step = 0
    for epoch in range(settings.epochs):
        losses = []
        for index in rng.permutation(len(batches)):
            batch = batches[index]
            ids, mask = _padded([sequences[i] for i in batch])
            if settings.mask_rate:
                ids = _masked(ids, mask, settings.mask_rate, mask_id)
            logits = head(encoder(ids, mask) * HEAD_SCALE).squeeze(-1)
            loss = F.binary_cross_entropy_with_logits(logits, torch.tensor(labels[batch], dtype=torch.float32),
                                                      pos_weight=positive_weight)
            if not torch.isfinite(loss):
                raise InputError(f"adapter training diverged (loss {loss.item()}) at step {step + 1}; lower the "
                                 "learning rate")
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            losses.append(loss.item())
        logger.info("adapter epoch %d/%d: %d steps, mean loss %.4f", epoch + 1, settings.epochs, step,
                    float(np.mean(losses)))


def _masked(ids: Any, mask: Any, rate: float, mask_id: int) -> Any:
    """``ids`` ``(N, L)`` with each token but the first and last of every sequence (``mask`` marks its tokens)
    replaced by ``mask_id`` with probability ``rate``, drawn from torch's random state."""
    import torch

    inner = mask.bool().clone()
    inner[:, 0] = False
    inner[torch.arange(len(ids)), mask.sum(1).long() - 1] = False  # [SEP]
    chosen = inner & (torch.rand(ids.shape) < rate)
    return torch.where(chosen, torch.tensor(mask_id), ids)


def _mask_token_id() -> int:
    from bastion.defenses.text.embedding import load_model

    return int(load_model().tokenizer.token_to_id("[MASK]"))


def _padded(sequences: list[list[int]]) -> tuple[Any, Any]:
    import torch

    length = max(len(sequence) for sequence in sequences)
    ids = torch.zeros(len(sequences), length, dtype=torch.long)
    mask = torch.zeros(len(sequences), length)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1.0
    return ids, mask


@functools.cache
def _torch_encoder_class() -> type:
    """The torch modules, defined on first use so that importing this module does not import torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class LowRankLinear(nn.Module):
        """A frozen linear map plus a trainable ``scale * B @ A`` (``B`` starts at zero: no change at first)."""

        def __init__(self, weight: torch.Tensor, bias: torch.Tensor, rank: int, alpha: float) -> None:
            super().__init__()
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias)
            self.a = nn.Parameter(torch.randn(rank, weight.shape[1]) / math.sqrt(weight.shape[1]))
            self.b = nn.Parameter(torch.zeros(weight.shape[0], rank))
            self.scale = alpha / rank

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.linear(x, self.weight, self.bias) + F.linear(F.linear(x, self.a), self.b) * self.scale

    class TorchEncoder(nn.Module):
        """all-MiniLM-L6-v2 in torch (the same forward pass as the NumPy encoder) with every layer's linear maps
        adapted; ``forward(ids (N, L), mask (N, L))`` gives unit-length mean-pooled embeddings ``(N, 384)``."""

        def __init__(self, rank: int, alpha: float) -> None:
            super().__init__()
            from bastion.defenses.text.embedding import base_weights

            weights, config = base_weights()
            tensor = lambda name: torch.from_numpy(np.array(weights[name], dtype=np.float32))  # noqa: E731
            self.heads = int(config["num_attention_heads"])
            self.eps = float(config["layer_norm_eps"])
            self.width = int(config["hidden_size"])
            self.register_buffer("word", tensor("embeddings.word_embeddings.weight"))
            self.register_buffer("position", tensor("embeddings.position_embeddings.weight"))
            self.register_buffer("token_type", tensor("embeddings.token_type_embeddings.weight")[0])
            self.register_buffer("norm_weight", tensor("embeddings.LayerNorm.weight"))
            self.register_buffer("norm_bias", tensor("embeddings.LayerNorm.bias"))
            self.layers = nn.ModuleList()
            for index in range(int(config["num_hidden_layers"])):
                prefix = f"encoder.layer.{index}."
                layer = nn.Module()
                for name, weight_name in LINEARS.items():
                    layer.add_module(name, LowRankLinear(tensor(f"{prefix}{weight_name}.weight"),
                                                         tensor(f"{prefix}{weight_name}.bias"), rank, alpha))
                for norm, weight_name in (("attention_norm", "attention.output.LayerNorm"),
                                          ("output_norm", "output.LayerNorm")):
                    layer.register_buffer(f"{norm}_weight", tensor(f"{prefix}{weight_name}.weight"))
                    layer.register_buffer(f"{norm}_bias", tensor(f"{prefix}{weight_name}.bias"))
                self.layers.append(layer)
            self.rank, self.alpha = rank, alpha

        def trainable(self) -> list[nn.Parameter]:
            return [parameter for parameter in self.parameters() if parameter.requires_grad]

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            count, length = ids.shape
            hidden = self.word[ids] + self.position[:length][None] + self.token_type
            hidden = F.layer_norm(hidden, (self.width,), self.norm_weight, self.norm_bias, eps=self.eps)
            bias = (1.0 - mask[:, None, None, :]) * -1e9
            head_width = self.width // self.heads
            for layer in self.layers:
                def heads(x: torch.Tensor) -> torch.Tensor:
                    return x.view(count, length, self.heads, head_width).transpose(1, 2)

                query, key, value = heads(layer.query(hidden)), heads(layer.key(hidden)), heads(layer.value(hidden))
                weights = torch.softmax(query @ key.transpose(-1, -2) / math.sqrt(head_width) + bias, dim=-1)
                context = (weights @ value).transpose(1, 2).reshape(count, length, self.width)
                hidden = F.layer_norm(layer.attention_out(context) + hidden, (self.width,),
                                      layer.attention_norm_weight, layer.attention_norm_bias, eps=self.eps)
                inner = F.gelu(layer.intermediate(hidden))
                hidden = F.layer_norm(layer.output(inner) + hidden, (self.width,), layer.output_norm_weight,
                                      layer.output_norm_bias, eps=self.eps)
            weights = mask[..., None]
            return F.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1)

        def adapter(self) -> EncoderAdapter:
            factors = {}
            for index, layer in enumerate(self.layers):
                for name in LINEARS:
                    linear = getattr(layer, name)
                    factors[f"{index}.{name}"] = (linear.a.detach().numpy().copy(), linear.b.detach().numpy().copy())
            return EncoderAdapter(self.rank, float(self.alpha), factors)

    return TorchEncoder


def _torch_encoder(rank: int, alpha: float) -> Any:
    """A new ``TorchEncoder`` (see :func:`_torch_encoder_class`) with fresh adapters."""
    return _torch_encoder_class()(rank, alpha)
