"""Adapter for a ``torch.nn.Module``: bounds and normalisation live here, eval mode is enforced."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from bastion.core.errors import InputError
from bastion.core.threat import Access
from bastion.models.base import ModelInput, as_input


class TorchClassifier:
    """A white-box classifier around a torch module.

    Args:
        module: maps normalised inputs ``(N, *input_shape)`` to logits ``(N, C)``.
        input_shape: per-sample shape, e.g. ``(1, 28, 28)``.
        num_classes: ``C``; checked against the module's output on first use.
        bounds: valid input range, default ``(0, 1)``.
        mean, std: optional per-channel normalisation applied inside ``logits`` as ``(x - mean) / std``.
        kind: description for reports (``torch`` or ``torchscript``).

    A module in training mode is switched to eval mode for every call and switched back afterwards. A module
    already in eval mode is run as it is, so a child switched back to training on purpose (dropout at test
    time, say) stays so: a scan then flags the model's outputs as random. Wrapping the module turns off
    ``requires_grad`` on its parameters (attacks only need input gradients); :meth:`trainable` gives them
    back for training.
    """

    access: Access = "white"

    def __init__(
        self,
        module: nn.Module,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        bounds: tuple[float, float] = (0.0, 1.0),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        kind: str = "torch",
    ) -> None:
        if num_classes < 2:
            raise InputError(f"num_classes must be >= 2, got {num_classes}")
        self.module = module
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.kind = kind
        self._mean = self._channel_tensor(mean, "mean")
        self._std = self._channel_tensor(std, "std")
        self._channels_last = False  # see in_channels_last
        if self._std is not None and bool((self._std <= 0).any()):
            raise InputError("std must be positive in every channel")
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    def _channel_tensor(self, values: Sequence[float] | None, name: str) -> torch.Tensor | None:
        if values is None:
            return None
        check_channel_values(values, self.input_shape, name)
        return torch.as_tensor(values, dtype=torch.float32).flatten().reshape(-1, *([1] * (len(self.input_shape) - 1)))

    @property
    def device(self) -> torch.device:
        first = next(iter(self.module.parameters()), None)
        return first.device if first is not None else torch.device("cpu")

    @contextmanager
    def _eval_mode(self) -> Iterator[None]:
        if not self.module.training:
            # Already in eval mode (loaded models are): switching costs more than a small model's forward pass.
            # A module set to eval with some child switched back to training is run as it is.
            yield
            return
        was_training = self.module.training
        self.module.eval()
        try:
            yield
        finally:
            self.module.train(was_training)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the adapter's normalisation: ``(x - mean) / std`` (identity when unset)."""
        if self._mean is not None:
            x = x - self._mean.to(x.device, x.dtype)
        if self._std is not None:
            x = x / self._std.to(x.device, x.dtype)
        return x

    def in_channels_last(self) -> TorchClassifier:
        """A copy whose module and 4-D inputs run in channels-last memory layout (faster convolutions and pooling on
        CPU; the last bits of the logits differ from this one's). This classifier is left as it is.

        Raises:
            InputError: the inputs are not images ``(C, H, W)``.
        """
        if len(self.input_shape) != 3:
            raise InputError(f"channels-last layout is for image inputs (C, H, W); this model takes "
                             f"{list(self.input_shape)}")
        twin = copy.copy(self)
        twin.module = copy.deepcopy(self.module).to(memory_format=torch.channels_last)
        twin._channels_last = True
        return twin

    def logits(self, x: ModelInput) -> torch.Tensor:
        """Logits ``(N, C)`` for inputs ``(N, *input_shape)`` in ``bounds`` (a tensor, or a NumPy array: see
        :func:`~bastion.models.base.as_input`); differentiable in ``x``."""
        x = self.normalise(self._tensor(x, "logits"))
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._eval_mode():
            out = self.module(x)
        if out.ndim != 2 or out.shape[1] != self.num_classes:
            raise InputError(
                f"the model returned shape {tuple(out.shape)}; expected (N, {self.num_classes}) logits"
            )
        return out

    def predict(self, x: ModelInput) -> torch.Tensor:
        """Labels ``(N,)`` int64 for a tensor or a NumPy array."""
        with torch.no_grad():
            return self.logits(self._tensor(x, "predict")).argmax(dim=1)

    def _tensor(self, x: ModelInput, method: str) -> torch.Tensor:
        """A tensor as it is; a NumPy array as float32 on the module's device (see ``as_input``)."""
        return x if isinstance(x, torch.Tensor) else as_input(x, method).to(self.device)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The module's state dict as detached, contiguous tensors: what a ``.safetensors`` file holds."""
        return {name: value.detach().contiguous() for name, value in self.module.state_dict().items()}

    @contextmanager
    def trainable(self) -> Iterator[nn.Module]:
        """Give the module's parameters gradients back (for training), restoring the frozen state after."""
        for parameter in self.module.parameters():
            parameter.requires_grad_(True)
        try:
            yield self.module
        finally:
            for parameter in self.module.parameters():
                parameter.requires_grad_(False)


def check_channel_values(values: Sequence[float], input_shape: Sequence[int], name: str) -> None:
    """Refuse per-channel values (``mean``, ``std``) that are not finite, or whose count is neither 1 nor the
    input's channels (``input_shape[0]`` for inputs of two or more dimensions; a flat input takes any count).
    ``name`` is how the message names the values (``mean``, or ``--mean`` for the CLI)."""
    flat = torch.as_tensor(values, dtype=torch.float64).flatten()
    if not bool(torch.isfinite(flat).all()):
        raise InputError(f"{name} must be finite numbers, got {','.join(map(str, flat.tolist()))}")
    count = len(flat)
    channels = input_shape[0] if len(input_shape) > 1 else count
    if count not in (1, channels):
        raise InputError(f"{name} has {count} values; give 1 value or one per channel ({channels})")
