"""``run_certify``: certificates for a dataset, the certified-accuracy curve, and an attack for contrast."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from bastion import __version__
from bastion.certify.base import Certificate
from bastion.certify.bounds import certified_accuracy, certify_bounds
from bastion.certify.sequential import certify_sequential
from bastion.certify.smoothing import GaussianSmoothing, SmoothingCertificate
from bastion.core.errors import CapabilityError, InputError
from bastion.core.evidence import CertifiedSample, CertifyConfig, CertifyMethod, CertifyRecord, CurvePoint
from bastion.core.ids import array_digest, keys_from_ids
from bastion.core.records import ArtifactRef, DatasetRef
from bastion.core.threat import Norm, ThreatModel
from bastion.data.sources import Dataset
from bastion.models.base import Classifier, predict_in_batches
from bastion.models.loading import LoadedModel
from bastion.models.torch_adapter import TorchClassifier
from bastion.scan.cascade import run_cascade
from bastion.scan.engine import ScanEngine
from bastion.scan.progress import ProgressCallback, no_progress
from bastion.scan.runner import library_versions
from bastion.scan.suites import build_attacks
from bastion.workflows.scan_common import check_fits, check_in_bounds

#: Default curve radii, as multiples of sigma (smoothing) or of eps (bounds).
SMOOTHING_RADII = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
BOUND_RADII = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Shards of a smoothing certification on an engine that does not say how many it wants.
SMOOTHING_SHARDS = 16


@dataclass(frozen=True)
class CertifySettings:
    """What to certify and how.

    Attributes:
        method: ``smoothing`` (Cohen et al., l2), or bounds: ``ibp``, ``crown``, ``crown-ibp``.
        norm: the ball of the bounds methods (``linf``, the default, or ``l2``); smoothing certifies l2.
        eps: the headline radius; required for bounds, default ``sigma`` for smoothing.
        radii: radii of the certified-accuracy curve (default: multiples of sigma or eps).
        sigma, n, n0, alpha: smoothing's noise level, sample sizes (estimation and selection) and
            failure probability. sequential: stop sampling a point once its certificate is decided.
        batch_size: noisy copies per forward pass (smoothing) or samples per bound pass.
        attack: also attack the model at the headline radius (quick suite) so the report shows
            accuracy under attack next to certified accuracy.
    """

    method: CertifyMethod
    norm: Norm | None = None
    eps: float | None = None
    radii: list[float] | None = field(default=None)
    sigma: float = 0.25
    n: int = 10_000
    n0: int = 100
    alpha: float = 0.001
    sequential: bool = False
    seed: int = 0
    batch_size: int = 1000
    attack: bool = True

    @property
    def norm_certified(self) -> Norm:
        if self.method == "smoothing":
            return "l2"
        return self.norm or "linf"

    def headline(self) -> float:
        if self.eps is not None:
            return self.eps
        if self.method == "smoothing":
            return self.sigma
        raise InputError(f"--eps is required for --method {self.method}: the radius of the ball to certify")

    def curve_radii(self) -> list[float]:
        if self.radii is not None:
            radii = list(self.radii)
        else:
            scale = self.sigma if self.method == "smoothing" else self.headline()
            radii = [scale * m for m in (SMOOTHING_RADII if self.method == "smoothing" else BOUND_RADII)]
        # Radius 0 (correct and not abstained) anchors the curve at the clean end.
        return sorted(set(radii) | {0.0, self.headline()})


def run_certify(
    loaded: LoadedModel, dataset: Dataset, settings: CertifySettings, *, progress: ProgressCallback = no_progress,
    engine: ScanEngine | None = None,
) -> CertifyRecord:
    """Certify every sample of ``dataset``; returns the evidence record.

    ``engine`` certifies by randomized smoothing in shards of whole chunks (default: here, chunk by chunk); a
    :class:`~bastion.scan.engine.RayEngine` spreads them over a cluster for the same certificates (the noise
    is keyed per sample).

    Raises:
        InputError: bad settings or data. CapabilityError: the model cannot be certified this way
            (bounds need a torch model made of supported layers).
    """
    check_certify_settings(settings)
    model = loaded.classifier
    check_fits(dataset, model, "--data")
    check_in_bounds(dataset, model, "--data")
    x = torch.as_tensor(dataset.x, dtype=torch.float32)
    y = torch.as_tensor(dataset.y, dtype=torch.int64)
    ids = dataset.sample_ids
    keys = keys_from_ids(ids)
    radius = settings.headline()
    radii = settings.curve_radii()
    started = time.perf_counter()
    if settings.method == "smoothing":
        certificates, passes = _smoothing(model, x, keys, settings, radii, progress, engine)
        curve = _curve_from_radii(certificates, y, radii)
    else:
        certificates, curve = _bounds(model, x, y, settings, radii, progress)
        passes = None
    seconds = time.perf_counter() - started
    clean = float((predict_in_batches(model, x) == y).float().mean())
    robust = _attack(model, x, y, keys, settings, radius, progress) if settings.attack and radius > 0 else None
    headline = next(point.certified_accuracy for point in curve if point.radius == radius)
    return CertifyRecord(
        bastion_version=__version__,
        library_versions=library_versions(),
        config=CertifyConfig(
            method=settings.method, norm=settings.norm_certified, radius=radius, radii=radii,
            sigma=settings.sigma if settings.method == "smoothing" else None,
            n=settings.n if settings.method == "smoothing" else None,
            n0=settings.n0 if settings.method == "smoothing" else None,
            alpha=settings.alpha if settings.method == "smoothing" else None,
            sequential=settings.sequential, bounds=model.bounds, seed=settings.seed, batch_size=settings.batch_size),
        model=ArtifactRef(description=loaded.description, sha256=loaded.sha256, kind=loaded.kind,
                          access=model.access),
        data=DatasetRef(description=dataset.description, count=len(x), sha256=array_digest(dataset.x, dataset.y),
                        input_shape=list(model.input_shape), num_classes=model.num_classes),
        clean_accuracy=clean,
        robust_accuracy=robust,
        robust_attack=f"quick suite (FGSM, PGD), {settings.norm_certified} {radius:g}"
        + (", on the base model without noise" if settings.method == "smoothing" else "") if robust is not None
        else None,
        certified_accuracy=headline,
        abstain_rate=sum(c.abstained for c in certificates) / len(certificates),
        curve=curve,
        samples=[
            CertifiedSample(index=i, sample_id=ids[i], label=int(y[i]), prediction=c.prediction, radius=c.radius,
                            abstained=c.abstained, forward_passes=None if passes is None else int(passes[i]))
            for i, c in enumerate(certificates)
        ],
        mean_forward_passes=None if passes is None else float(sum(passes) / len(passes)),
        seconds=seconds,
    )


def check_certify_settings(settings: CertifySettings) -> None:
    """Refuse settings that cannot give a certificate, before any model or data is loaded (``InputError`` naming
    the command-line option to fix)."""
    if settings.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {settings.batch_size}")
    settings.headline()  # the bounds methods have no default radius
    if settings.eps is not None and not (settings.eps > 0 and settings.eps < float("inf")):
        raise InputError(f"--eps must be a finite radius > 0 (at radius 0 nothing is certified: that is clean "
                         f"accuracy), got {settings.eps}")
    if settings.radii is not None and any(not (r >= 0 and r < float("inf")) for r in settings.radii):
        raise InputError(f"--radii must be finite and >= 0, got {settings.radii}")
    if settings.method == "smoothing":
        _check_smoothing(settings)


def _check_smoothing(settings: CertifySettings) -> None:
    if settings.norm == "linf":
        raise InputError("Gaussian smoothing certifies l2 radii: use --norm l2 (or leave --norm out), or a bounds "
                         "method (--method crown) for linf")
    if not (settings.sigma > 0 and settings.sigma < float("inf")):
        raise InputError(f"--sigma must be a finite noise level > 0, got {settings.sigma}")
    if not 0 < settings.alpha < 1:
        raise InputError(f"--alpha must be a probability strictly between 0 and 1, got {settings.alpha}")
    for flag, value in (("--n", settings.n), ("--n0", settings.n0)):
        if value < 1:
            raise InputError(f"{flag} must be a number of noise samples >= 1, got {value}")
    # With every one of n votes for the top class, the one-sided Clopper-Pearson lower bound of its probability
    # is alpha ** (1 / n); no radius is certified unless it exceeds 1/2.
    if settings.alpha ** (1 / settings.n) <= 0.5:
        least = math.floor(math.log(settings.alpha) / math.log(0.5)) + 1
        raise InputError(f"--n {settings.n} cannot certify anything at --alpha {settings.alpha:g}: even if all "
                         f"{settings.n} noisy copies voted for the top class, its probability's lower confidence "
                         f"bound would be {settings.alpha ** (1 / settings.n):.3f}, not above 1/2; use --n {least} "
                         "or more (radii grow with --n; 10,000 is usual) or a larger --alpha")


def _curve_from_radii(certificates: list[Certificate], y: torch.Tensor, radii: list[float]) -> list[CurvePoint]:
    accuracies = certified_accuracy(certificates, y, radii)
    return [CurvePoint(radius=r, certified_accuracy=a) for r, a in zip(radii, accuracies, strict=True)]


def _smoothing(model: Classifier, x: torch.Tensor, keys: torch.Tensor, settings: CertifySettings,
               radii: list[float], progress: ProgressCallback, engine: ScanEngine | None = None
               ) -> tuple[list[Certificate], list[int]]:
    """Cohen's CERTIFY (or its sequential form) a few samples at a time (a chunk), for the progress bar; on an
    engine, in shards of whole chunks (the engine's ``shards``, else :data:`SMOOTHING_SHARDS` of them)."""
    chunk = _smoothing_chunk(settings)
    certificates: list[SmoothingCertificate] = []
    if engine is None:
        for start in range(0, len(x), chunk):
            certificates += _smooth_certify(model, x, keys, settings, radii, start, min(start + chunk, len(x)))
            progress("certify (smoothing)", len(certificates), len(x))
    else:
        shards = getattr(engine, "shards", None) or SMOOTHING_SHARDS
        size = chunk * -(-len(x) // (chunk * shards))
        jobs = [(start, min(start + size, len(x))) for start in range(0, len(x), size)]
        for part in engine.map(_smooth_certify, jobs, shared=(model, x, keys, settings, radii)):
            certificates += part
        progress("certify (smoothing)", len(certificates), len(x))
    return list(certificates), [c.forward_passes for c in certificates]


def _smoothing_chunk(settings: CertifySettings) -> int:
    """Samples certified per call: about a hundred noisy copies of each fill one ``batch_size`` pass."""
    return max(1, settings.batch_size // 100)


def _smooth_certify(model: Classifier, x: torch.Tensor, keys: torch.Tensor, settings: CertifySettings,
                    radii: list[float], start: int, end: int) -> list[SmoothingCertificate]:
    """The certificates of samples ``start`` to ``end``, chunk by chunk (what an engine's worker runs)."""
    smoothed = GaussianSmoothing(model, settings.sigma, batch_size=settings.batch_size, seed=settings.seed)
    chunk = _smoothing_chunk(settings)
    certificates: list[SmoothingCertificate] = []
    for first in range(start, end, chunk):
        batch, batch_keys = x[first: min(first + chunk, end)], keys[first: min(first + chunk, end)]
        if settings.sequential:
            certificates += certify_sequential(smoothed, batch, radii, n0=settings.n0, n=settings.n,
                                               alpha=settings.alpha, keys=batch_keys)
        else:
            certificates += smoothed.certify(batch, n0=settings.n0, n=settings.n, alpha=settings.alpha,
                                             keys=batch_keys)
    return certificates


def _bounds(model: Classifier, x: torch.Tensor, y: torch.Tensor, settings: CertifySettings, radii: list[float],
            progress: ProgressCallback) -> tuple[list[Certificate], list[CurvePoint]]:
    """Bounds at every curve radius; a sample's radius is the largest curve radius it is certified at."""
    if not isinstance(model, TorchClassifier):
        raise CapabilityError(f"--method {settings.method} bounds a torch network layer by layer; this model is "
                              f"{model.kind}. Use --method smoothing, which needs predictions only")
    predictions = predict_in_batches(model, x)
    best = torch.zeros(len(x), dtype=torch.float64)  # float32 would store 0.1 as 0.0999..., under the radius
    curve = []
    for done, radius in enumerate(radii, start=1):
        if radius == 0:
            certified = predictions == y
        else:
            certificates = certify_bounds(model, x, y, eps=radius, norm=settings.norm_certified,
                                          method=settings.method, batch_size=settings.batch_size)
            certified = torch.tensor([c.radius >= radius for c in certificates])
        best = torch.where(certified & (best < radius), torch.tensor(radius, dtype=torch.float64), best)
        curve.append(CurvePoint(radius=radius, certified_accuracy=float(certified.float().mean())))
        progress(f"certify ({settings.method})", done, len(radii))
    pairs = zip(predictions.tolist(), best.tolist(), strict=True)
    return [Certificate(int(p), float(r), False) for p, r in pairs], curve


def _attack(model: Classifier, x: torch.Tensor, y: torch.Tensor, keys: torch.Tensor, settings: CertifySettings,
            radius: float, progress: ProgressCallback) -> float | None:
    """Accuracy under the quick suite at the headline radius (``None`` when the model has no gradients)."""
    if model.access != "white":
        return None
    threat = ThreatModel(norm=settings.norm_certified, eps=radius, bounds=model.bounds)
    result = run_cascade(model, x, y, threat, build_attacks("quick", None), keys=keys, seed=settings.seed,
                         progress=lambda task, done, total: progress(f"attack {task}", done, total))
    return result.robust_accuracy
