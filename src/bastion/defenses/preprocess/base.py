"""The preprocessor contract: a scikit-learn style transform of model inputs, applied before the model.

A preprocessor maps inputs ``(N, *input_shape)`` to inputs of the same shape, in the classifier's
input units and bounds. Parameters go in ``__init__``; :meth:`Preprocessor.fit` learns the bounds
(``bounds_``) and returns ``self``; :meth:`Preprocessor.get_params` is what the evidence records.

Each class declares two capabilities that decide how an adaptive attacker treats it:

- ``differentiable``: autograd through the step gives a useful gradient. When false (rounding,
  quantisation) the adaptive attack uses BPDA: the real step forward, the identity backward.
- ``random``: the step draws random numbers. Draws are keyed (:mod:`bastion.core.seeding`) by the
  step's ``seed``, a per-sample key and a ``draw`` number, so they are reproducible; the adaptive
  attack averages its gradients over several draws (EOT).
"""

from __future__ import annotations

import hashlib
import math
import numbers
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from bastion.core.errors import InputError

Bounds = tuple[float, float]


def content_keys(x: torch.Tensor) -> torch.Tensor:
    """``(N,)`` int64 keys, one per sample, hashed from the sample's float32 bytes.

    The same input always gets the same key (and so the same random draw), whatever batch it is in;
    two inputs that differ in any bit get independent draws.
    """
    rows = x.detach().to(torch.float32).cpu().contiguous().reshape(len(x), -1).numpy()
    values = [int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little") >> 2
              for row in rows]
    return torch.tensor(values, dtype=torch.int64, device=x.device)


def check_bounds(bounds: tuple[float, float]) -> Bounds:
    """``(low, high)`` as floats; :class:`InputError` unless both are finite and ``low < high``."""
    try:
        low, high = float(bounds[0]), float(bounds[1])
    except (TypeError, ValueError, IndexError):
        raise InputError(f"bounds must be two numbers (low, high), got {bounds!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise InputError(f"bounds must be finite with low < high, got {bounds!r}")
    return low, high


class Preprocessor(ABC):
    """Base class of the preprocessing defenses.

    Subclasses set ``name`` (the spec name, e.g. ``"bits"``), ``spec_param`` (the ``__init__``
    parameter a spec value such as ``bits:4`` sets), ``spec_type`` (its type), ``spec_help`` (one
    line for error messages), ``differentiable`` and ``random``, and implement :meth:`_apply`.
    Call ``fit(bounds=...)`` before :meth:`transform` (``PreprocessedClassifier`` does it with the
    classifier's bounds).
    """

    name: ClassVar[str]
    spec_param: ClassVar[str]
    spec_type: ClassVar[type[int] | type[float]]
    spec_help: ClassVar[str]
    differentiable: ClassVar[bool]
    random: ClassVar[bool] = False

    def fit(self, x: torch.Tensor | None = None, *, bounds: tuple[float, float] = (0.0, 1.0)) -> Preprocessor:
        """Record the input bounds (``bounds_``); ``x`` ``(N, *input_shape)`` is only checked. Returns ``self``."""
        self.bounds_ = check_bounds(bounds)
        if x is not None:
            self._check_input(x)
        return self

    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` parameters, for the evidence record."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and not k.endswith("_")}

    def spec(self) -> str:
        """The step as a spec string (``"bits:4"``) that parses back to the same step."""
        return f"{self.name}:{getattr(self, self.spec_param)}"

    def transform(self, x: torch.Tensor, *, keys: torch.Tensor | None = None, draw: int = 0) -> torch.Tensor:
        """Apply the step to ``x`` ``(N, *input_shape)``; returns a tensor of the same shape, in bounds.

        Args:
            x: floating-point inputs in ``bounds_``.
            keys: ``(N,)`` int64 per-sample keys for random steps (default: hashed from ``x``'s
                content, see :func:`content_keys`); deterministic steps ignore them.
            draw: which random draw to take (random steps only), default 0.
        """
        bounds = getattr(self, "bounds_", None)
        if bounds is None:
            raise InputError(f"{type(self).__name__} is not fitted: call fit(bounds=(low, high)) first")
        self._check_input(x)
        if self.random and keys is None:
            keys = content_keys(x)
        return self._apply(x, bounds, keys, draw)

    __call__ = transform

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise InputError(f"{self.name}: inputs must be a floating-point tensor (N, ...), got "
                             f"{getattr(x, 'dtype', type(x).__name__)}")
        if x.ndim < 2:
            raise InputError(f"{self.name}: inputs must be a batch (N, *input_shape), got shape {tuple(x.shape)}")

    @abstractmethod
    def _apply(self, x: torch.Tensor, bounds: Bounds, keys: torch.Tensor | None, draw: int) -> torch.Tensor:
        """The transform itself; inputs are checked and ``keys`` is set for random steps."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


class ImagePreprocessor(Preprocessor):
    """A step that works on images ``(N, C, H, W)`` or ``(N, H, W)`` (spatial dimensions last)."""

    def _check_input(self, x: torch.Tensor) -> None:
        super()._check_input(x)
        if x.ndim not in (3, 4):
            raise InputError(f"{self.name} works on images (N, C, H, W) or (N, H, W); got per-sample shape "
                             f"{tuple(x.shape[1:])}. Use bits or noise for tabular inputs")


def as_planes(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` or ``(N, H, W)`` -> ``(N * C, 1, H, W)``: each channel a separate grey plane."""
    return x.reshape(-1, 1, *x.shape[-2:])


def check_int(value: object, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``; :class:`InputError` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or int(value) != value:
        raise InputError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        where = f"in {low}..{high}" if high is not None else f">= {low}"
        raise InputError(f"{name} must be an integer {where}, got {value!r}")
    return int(value)


def check_float(value: object, name: str, *, low: float = 0.0, inclusive: bool = False,
                high: float | None = None) -> float:
    """``value`` as a finite float above ``low`` (or at it when ``inclusive``) and at most ``high``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    too_low = value < low if inclusive else value <= low
    if too_low or (high is not None and value > high):
        relation = ">=" if inclusive else ">"
        upper = f" and <= {high:g}" if high is not None else ""
        raise InputError(f"{name} must be {relation} {low:g}{upper}, got {value!r}")
    return float(value)
