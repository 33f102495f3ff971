"""Deterministic certification by IBP and CROWN bounds: the public entry points.

Methods (``method=``):

* ``"ibp"``: interval bound propagation (Gowal et al. 2018). Cheapest, loosest except on models
  trained with IBP.
* ``"crown"``: CROWN (Zhang et al. 2018) with CROWN intermediate bounds, each intersected with IBP's,
  and the final bound the larger of CROWN's and IBP's: never looser than IBP. The most expensive.
* ``"crown-ibp"``: IBP intermediate bounds and a CROWN pass for the output only (Zhang et al. 2020),
  again never looser than IBP. Close to IBP's cost.

Margins: ``margin_bounds`` returns lower bounds on ``z_y - z_j`` for every class ``j``; the entry
``j == y`` is ``0`` (the margin of a class against itself is exactly zero). A sample is certified at
``eps`` when every margin ``j != y`` is ``> 0``: no input of the ball (within the classifier's
bounds) can make another class score at least as high as ``y``.

Inputs everywhere: ``x`` ``(N, *classifier.input_shape)`` in ``classifier.bounds``, labels ``y``
``(N,)`` int64; ``norm`` ``"linf"`` (default) or ``"l2"``.

Example:
    >>> lower = margin_bounds(classifier, x, y, eps=0.1, method="crown")
    >>> certificates = certify_bounds(classifier, x, y, eps=0.1)
    >>> curve = certified_accuracy(certified_radius(classifier, x, y, max_eps=0.3), y, [0.0, 0.1, 0.2])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

from bastion.certify.base import Certificate
from bastion.certify.crown import crown_lower
from bastion.certify.ibp import InputRegion, interval_bounds, spec_lower
from bastion.certify.network import Chain, build_chain
from bastion.core.errors import CapabilityError, ConfigError, InputError
from bastion.core.threat import Norm
from bastion.models.torch_adapter import TorchClassifier

Method = Literal["ibp", "crown", "crown-ibp"]
METHODS: tuple[str, ...] = ("ibp", "crown", "crown-ibp")
NORMS: tuple[str, ...] = ("linf", "l2")


def margin_spec(y: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(N, C, C)`` rows ``e_y - e_j``: ``spec @ logits`` is the margin vector ``z_y - z_j`` (row ``y`` is 0)."""
    eye = torch.eye(num_classes, dtype=dtype, device=y.device)
    return eye[y][:, None, :] - eye[None]


def spec_bounds(chain: Chain, region: InputRegion, spec: torch.Tensor, method: Method) -> torch.Tensor:
    """``(N, S)`` lower bounds of ``spec @ logits`` by ``method``; differentiable in the parameters."""
    if method == "ibp":
        return spec_lower(chain, interval_bounds(chain, region), spec)
    return crown_lower(chain, region, spec, intermediate="crown" if method == "crown" else "ibp")


def margin_bounds(
    classifier: TorchClassifier,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: Norm = "linf",
    method: Method = "crown",
    batch_size: int = 64,
) -> torch.Tensor:
    """Lower bounds ``(N, C)`` on the margins ``z_y - z_j`` over the ``norm`` ball of radius ``eps``.

    Entry ``[i, y_i]`` is 0. ``batch_size`` samples are bounded at a time (default 64; CROWN on a
    CNN holds ``batch_size x (unstable neurons) x (widest layer)`` coefficients, in chunks).

    Raises:
        CapabilityError: not a TorchClassifier, or a layer IBP/CROWN cannot bound.
        ConfigError: an unknown norm or method. InputError: bad eps, shapes, values or labels.
    """
    chain, x, y = _prepare(classifier, x, y, eps, norm, method, batch_size)
    return _margins(chain, classifier, x, y, torch.full((len(x),), float(eps)), norm, method, batch_size)


def logit_bounds(
    classifier: TorchClassifier,
    x: torch.Tensor,
    *,
    eps: float,
    norm: Norm = "linf",
    method: Method = "crown",
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lower, upper)`` bounds ``(N, C)`` on every logit over the ball (arguments as :func:`margin_bounds`).

    Bounds on margins are much tighter than differences of these: use :func:`margin_bounds` to certify.
    """
    chain, x, _ = _prepare(classifier, x, None, eps, norm, method, batch_size)
    classes = classifier.num_classes
    lowers, uppers = [], []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size]
            eye = torch.eye(classes, dtype=batch.dtype, device=batch.device).expand(len(batch), -1, -1)
            region = InputRegion.around(batch, norm, eps, classifier.bounds)
            result = spec_bounds(chain, region, torch.cat([eye, -eye], dim=1), method)
            lowers.append(result[:, :classes])
            uppers.append(-result[:, classes:])
    return torch.cat(lowers), torch.cat(uppers)


def certify_bounds(
    classifier: TorchClassifier,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    eps: float,
    norm: Norm = "linf",
    method: Method = "crown",
    batch_size: int = 64,
) -> list[Certificate]:
    """One :class:`Certificate` per sample at radius ``eps``.

    ``prediction`` is the clean prediction; ``radius`` is ``eps`` when every margin of ``y`` (default:
    the clean prediction) is positive over the ball, else ``0.0``; ``abstained`` is always False.
    A certificate for ``y`` whose clean prediction differs is never issued (radius 0.0).
    """
    chain, x, y = _prepare(classifier, x, y, eps, norm, method, batch_size)
    predictions = classifier.predict(x)
    target = predictions if y is None else y
    margins = _margins(chain, classifier, x, target, torch.full((len(x),), float(eps)), norm, method, batch_size)
    certified = _all_positive(margins, target) & (predictions == target)
    return [Certificate(int(p), float(eps) if bool(c) else 0.0, False)
            for p, c in zip(predictions.tolist(), certified.tolist(), strict=True)]


def certified_radius(
    classifier: TorchClassifier,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    max_eps: float,
    norm: Norm = "linf",
    method: Method = "crown",
    steps: int = 8,
    batch_size: int = 64,
) -> list[Certificate]:
    """The largest radius in ``[0, max_eps]`` each sample is certified at, by bisection (batched).

    Every radius returned was certified by an actual bound computation (the bisection only moves its
    lower end to certified radii); it is within ``max_eps / 2**steps`` of the largest certifiable one
    when certification is monotone in eps (it nearly always is). ``steps + 1`` bound passes.
    Certificates are as in :func:`certify_bounds`: radius ``0.0`` for a sample not certified at
    any radius tried, and for every sample whose clean prediction differs from ``y``.
    """
    if not isinstance(steps, int) or steps < 0:
        raise InputError(f"steps must be an integer >= 0, got {steps}")
    chain, x, y = _prepare(classifier, x, y, max_eps, norm, method, batch_size)
    predictions = classifier.predict(x)
    target = predictions if y is None else y
    todo = (predictions == target).nonzero().squeeze(1)
    low = torch.zeros(len(todo), dtype=x.dtype, device=x.device)
    high = torch.full_like(low, float(max_eps))
    for step in range(steps + 1):
        # Step 0 tries max_eps itself; a sample certified there is finished (low == high).
        active = (low < high).nonzero().squeeze(1)
        if not len(active):
            break
        trial = high[active] if step == 0 else (low[active] + high[active]) / 2
        index = todo[active]
        ok = _all_positive(_margins(chain, classifier, x[index], target[index], trial, norm, method, batch_size),
                           target[index])
        low[active] = torch.where(ok, trial, low[active])
        if step > 0:
            high[active] = torch.where(ok, high[active], trial)
    radius = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    radius[todo] = low
    return [Certificate(int(p), float(r), False) for p, r in zip(predictions.tolist(), radius.tolist(), strict=True)]


def certified_accuracy(certificates: Sequence[Certificate], y: torch.Tensor, radii: Sequence[float]) -> list[float]:
    """Fraction of samples certified correct at each radius of ``radii`` (``Certificate.certifies``)."""
    labels = y.tolist()
    if len(labels) != len(certificates):
        raise InputError(f"{len(certificates)} certificates for {len(labels)} labels")
    if not labels:
        return [0.0 for _ in radii]
    return [sum(c.certifies(label, r) for c, label in zip(certificates, labels, strict=True)) / len(labels)
            for r in radii]


def _all_positive(margins: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(N,)`` every margin against another class is positive (the own-class entry is ignored)."""
    own = torch.nn.functional.one_hot(target, margins.shape[1]).bool()
    return torch.where(own, torch.inf, margins).amin(dim=1) > 0


def _margins(chain: Chain, classifier: TorchClassifier, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
             norm: Norm, method: Method, batch_size: int) -> torch.Tensor:
    """Margin lower bounds in batches, with a per-sample radius ``eps`` ``(N,)``."""
    parts = []
    eps = eps.to(x.device, x.dtype)
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch, labels = x[start : start + batch_size], y[start : start + batch_size]
            region = InputRegion.around(batch, norm, eps[start : start + batch_size], classifier.bounds)
            spec = margin_spec(labels, classifier.num_classes, batch.dtype)
            parts.append(spec_bounds(chain, region, spec, method))
    return torch.cat(parts) if parts else x.new_zeros(0, classifier.num_classes)


def _prepare(
    classifier: object,
    x: torch.Tensor,
    y: torch.Tensor | None,
    eps: float,
    norm: str,
    method: str,
    batch_size: int,
) -> tuple[Chain, torch.Tensor, torch.Tensor | None]:
    """Validate every argument (raising errors that say what to fix) and read the network."""
    if not isinstance(classifier, TorchClassifier):
        raise CapabilityError(
            f"IBP/CROWN bounds need a white-box torch model (a TorchClassifier), got {type(classifier).__name__}; "
            "load the model as a torch module, or certify with randomized smoothing instead")
    if norm not in NORMS:
        raise ConfigError(f"unknown norm {norm!r}; IBP/CROWN bound the 'linf' or 'l2' ball")
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise InputError(f"eps must be a finite number >= 0, got {eps!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    x = _check_inputs(classifier, x)
    if y is not None:
        y = _check_labels(classifier, y, len(x))
    return build_chain(classifier), x, y


def _check_inputs(classifier: TorchClassifier, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise InputError(f"x must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if tuple(x.shape[1:]) != classifier.input_shape or x.ndim != len(classifier.input_shape) + 1:
        expected = ", ".join(map(str, classifier.input_shape))
        raise InputError(f"x has shape {tuple(x.shape)}; the model expects (N, {expected})")
    if len(x) and not bool(torch.isfinite(x).all()):
        raise InputError("x contains NaN or infinite values")
    low, high = classifier.bounds
    if len(x) and (float(x.min()) < low - 1e-6 or float(x.max()) > high + 1e-6):
        raise InputError(f"x ranges over [{float(x.min()):.4g}, {float(x.max()):.4g}], outside the model's bounds "
                         f"[{low}, {high}]; rescale the data or set the bounds")
    parameter = next(iter(classifier.module.parameters()), None)
    return x.to(classifier.device, parameter.dtype if parameter is not None else x.dtype)


def _check_labels(classifier: TorchClassifier, y: torch.Tensor, count: int) -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64:
        raise InputError(f"labels must be an int64 tensor, got {getattr(y, 'dtype', type(y).__name__)}")
    if y.shape != (count,):
        raise InputError(f"labels have shape {tuple(y.shape)}; expected ({count},), one per sample")
    if count and (int(y.min()) < 0 or int(y.max()) >= classifier.num_classes):
        raise InputError(f"labels range over [{int(y.min())}, {int(y.max())}]; the model has "
                         f"{classifier.num_classes} classes (0..{classifier.num_classes - 1})")
    return y.to(classifier.device)
