"""Scan a preprocessing defense twice: with plain attacks, then with adaptive ones (BPDA / EOT).

The plain pass attacks the defended model as it is: gradients are whatever autograd gives through
the preprocessing (zero through rounding, one noisy sample through random steps), which is how a
defense that hides gradients fools an evaluation. The adaptive pass runs the same suite, same seed,
on :meth:`PreprocessedClassifier.adaptive`: the same function with BPDA gradients through
non-differentiable steps and EOT gradients over random ones. Both passes judge every attack on the
real defended model (the engine verifies with ``predict``, which both views share).

The outcome's record (``scan.json``) is the adaptive pass, the headline; sanity flags in it say what
was defended, whether the plain number was inflated (gradient hiding) and whether the plain pass
found breaks the adaptive one missed. ``outcome.defense`` (``defense.json``) holds the defense's
parameters, the plain pass in full and a per-eps comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from bastion import __version__
from bastion.core.errors import InputError
from bastion.core.records import EpsResult, SanityFlag, ScanRecord
from bastion.data.sources import Dataset
from bastion.defenses.preprocess import AdaptiveView, PreprocessedClassifier, Preprocessor
from bastion.models.loading import LoadedModel
from bastion.scan.defaults import EOT_SAMPLES
from bastion.scan.defense_record import DEFENSE_FILE, DefenseRef, DefenseScanRecord, DefenseStepRef, PassComparison
from bastion.scan.engine import ScanEngine
from bastion.scan.outcome import ScanOutcome
from bastion.scan.progress import ProgressCallback, no_progress
from bastion.scan.runner import ScanSettings, run_scan

#: Plain robust accuracy above adaptive by more than this (5 points) flags a defense that hides gradients.
HIDE_THRESHOLD = 0.05


@dataclass(frozen=True)
class DefenseSettings:
    """The preprocessing defense to scan and how to attack it adaptively.

    Attributes:
        steps: preprocessors applied in order before the model (see ``parse_preprocess``).
        eot_samples: random draws averaged per adaptive gradient when a step is random (default 8).
        draws: random draws averaged per defended prediction (default 1; deterministic steps ignore it).
        hide_threshold: a plain-minus-adaptive gap above this flags gradient hiding (default 0.05).
    """

    steps: list[Preprocessor] = field(default_factory=list)
    eot_samples: int = EOT_SAMPLES
    draws: int = 1
    hide_threshold: float = HIDE_THRESHOLD


def run_defended_scan(
    loaded: LoadedModel,
    dataset: Dataset,
    settings: ScanSettings,
    defense: DefenseSettings,
    *,
    progress: ProgressCallback = no_progress,
    engine: ScanEngine | None = None,
) -> ScanOutcome:
    """Scan ``loaded.classifier`` behind ``defense.steps`` with plain, then adaptive attacks (each pass on
    ``engine``, see :func:`~bastion.scan.runner.run_scan`).

    Returns the adaptive pass as the outcome's record (the headline robust accuracy) and the
    comparison, the defense's parameters and the plain pass as ``outcome.defense``. When every step
    is differentiable and deterministic, the adaptive attack is the plain one and runs once.
    """
    if not defense.steps:
        raise InputError("a defended scan needs at least one preprocessing step")
    if not 0 <= defense.hide_threshold <= 1:
        raise InputError(f"hide_threshold is a share of accuracy in [0, 1], got {defense.hide_threshold}")
    defended = PreprocessedClassifier(loaded.classifier, defense.steps, draws=defense.draws)
    view = AdaptiveView(defended, eot_samples=defense.eot_samples)
    described = replace(loaded, description=f"{loaded.description} behind preprocessing {defended.spec}")
    plain = run_scan(replace(described, classifier=defended), dataset, settings, engine=engine,
                     progress=lambda task, done, total: progress(f"plain {task}", done, total))
    if view.gradients == "autograd":
        adaptive = replace(plain, record=plain.record.model_copy(deep=True))
    else:
        adaptive = run_scan(replace(described, classifier=view), dataset, settings, engine=engine,
                            progress=lambda task, done, total: progress(f"adaptive {task}", done, total))
    _mark_gradients(plain.record, "autograd")
    _mark_gradients(adaptive.record, view.gradients)
    comparison = [compare_passes(p, a, defense.hide_threshold)
                  for p, a in zip(plain.record.results, adaptive.record.results, strict=True)]
    _add_flags(adaptive.record, defended, view, comparison)
    record = DefenseScanRecord(
        bastion_version=__version__, defense=_defense_ref(defended), adaptive_gradients=view.gradients,
        eot_samples=defense.eot_samples, hide_threshold=defense.hide_threshold, comparison=comparison,
        plain=plain.record,
    )
    return replace(adaptive, defense=record)


def compare_passes(plain: EpsResult, adaptive: EpsResult, hide_threshold: float = HIDE_THRESHOLD) -> PassComparison:
    """The two passes at one eps, with the per-sample worst case over both (samples in the same order)."""
    if len(plain.samples) != len(adaptive.samples) or plain.eps != adaptive.eps:
        raise InputError("the plain and adaptive passes must cover the same samples at the same eps")
    pairs = list(zip(plain.samples, adaptive.samples, strict=True))
    both = sum(1 for p, a in pairs if p.robust and a.robust)
    only_plain = sum(1 for p, a in pairs if a.robust and not p.robust)
    gap = plain.robust_accuracy - adaptive.robust_accuracy
    plain_gradient, adaptive_gradient = gradient_robust_accuracy(plain), gradient_robust_accuracy(adaptive)
    gradient_gap = None if plain_gradient is None or adaptive_gradient is None else plain_gradient - adaptive_gradient
    return PassComparison(
        eps=adaptive.eps, clean_accuracy=adaptive.clean_accuracy, plain_robust_accuracy=plain.robust_accuracy,
        adaptive_robust_accuracy=adaptive.robust_accuracy, gap=gap,
        plain_gradient_robust_accuracy=plain_gradient, adaptive_gradient_robust_accuracy=adaptive_gradient,
        robust_under_both=both / len(pairs) if pairs else 0.0, broken_only_by_plain=only_plain,
        plain_not_real=gap > hide_threshold,
        hides_gradients=gap > hide_threshold or (gradient_gap is not None and gradient_gap > hide_threshold),
    )


def gradient_robust_accuracy(result: EpsResult) -> float | None:
    """Share of samples correct and not broken by a gradient (white-box) attack; ``None`` if none ran."""
    white = {attack.name for attack in result.attacks if attack.access == "white" and attack.skipped is None}
    if not white or not result.samples:
        return None
    standing = sum(1 for s in result.samples if s.clean_prediction == s.label and s.broken_by not in white)
    return standing / len(result.samples)


def _mark_gradients(record: ScanRecord, gradients: str) -> None:
    """Say in each gradient attack's parameters how it differentiated through the defense."""
    for result in record.results:
        for attack in result.attacks:
            if attack.access == "white":
                attack.params = {**attack.params, "gradients": gradients}


def _defense_ref(defended: PreprocessedClassifier) -> DefenseRef:
    steps = [
        DefenseStepRef(name=step.name, params=step.get_params(), differentiable=step.differentiable,
                       random=step.random, adaptive_gradient=_step_gradient(step))
        for step in defended.steps
    ]
    return DefenseRef(spec=defended.spec, steps=steps, draws=defended.get_params()["draws"],
                      prediction=_prediction_rule(defended))


def _step_gradient(step: Preprocessor) -> str:
    parts = ([] if step.differentiable else ["bpda"]) + (["eot"] if step.random else [])
    return "+".join(parts) or "autograd"


def _prediction_rule(defended: PreprocessedClassifier) -> str:
    if not defended.random:
        return "argmax of the model's logits on the preprocessed input (deterministic)"
    return (f"argmax of the model's logits averaged over {defended.draws} random draw(s), each keyed on a hash "
            "of the input's bytes and the step's seed: the same input always gets the same answer, and any "
            "changed input gets fresh randomness")


def _add_flags(record: ScanRecord, defended: PreprocessedClassifier, view: AdaptiveView,
               comparison: list[PassComparison]) -> None:
    """Flags in the headline record: what was defended, hidden gradients, breaks only the plain pass found."""
    headline = comparison[0]
    if view.gradients == "autograd":
        how = ("Every step is differentiable and deterministic, so the plain attacks are already adaptive "
               "and the suite ran once.")
    else:
        how = (f"The suite ran twice: plain (autograd through the defense) and adaptive ({view.gradients}); "
               f"these results are the adaptive pass. At eps={headline.eps:g}: plain robust "
               f"{headline.plain_robust_accuracy:.1%}, adaptive {headline.adaptive_robust_accuracy:.1%}.")
    record.results[0].flags.insert(0, SanityFlag(
        check="adaptive-evaluation", severity="info",
        message=f"The model is defended by preprocessing ({defended.spec}). {how} The defense's parameters "
        f"and the plain pass are in {DEFENSE_FILE}.",
    ))
    if defended.random:
        record.results[0].flags.insert(1, SanityFlag(
            check="randomised-defense", severity="info",
            message=f"The defense draws random numbers. Its prediction: {_prediction_rule(defended)}. Repeated "
            "passes over an input therefore agree and no randomness warning applies; the adaptive attack "
            f"averaged its gradients over {view.eot_samples} other draws per step (EOT).",
        ))
    for row, result in zip(comparison, record.results, strict=True):
        result.flags.extend(gap_flags(row, view.gradients))


def gap_flags(row: PassComparison, gradients: str) -> list[SanityFlag]:
    """Flags for one eps: the plain number overstates, only gradient attacks were fooled, or plain found more."""
    flags = []
    if row.plain_not_real:
        flags.append(SanityFlag(
            check="defense-hides-gradients",
            message=f"This defense hides gradients; its plain robust accuracy is not real: at eps={row.eps:g} "
            f"plain attacks leave {row.plain_robust_accuracy:.1%} robust, the adaptive attack ({gradients}) "
            f"{row.adaptive_robust_accuracy:.1%}, {100 * row.gap:.1f} points lower.",
        ))
    elif row.hides_gradients:
        flags.append(SanityFlag(
            check="defense-fools-gradient-attacks",
            message=f"This defense hides gradients from gradient attacks: at eps={row.eps:g} plain gradient "
            f"attacks leave {row.plain_gradient_robust_accuracy:.1%} robust, adaptive ones ({gradients}) "
            f"{row.adaptive_gradient_robust_accuracy:.1%}. The suite's black-box attacks made up for it here "
            f"(plain {row.plain_robust_accuracy:.1%}, adaptive {row.adaptive_robust_accuracy:.1%} overall), but "
            "an evaluation with gradient attacks alone would be fooled.",
        ))
    if row.broken_only_by_plain:
        flags.append(SanityFlag(
            check="plain-beats-adaptive",
            message=f"The plain attacks broke {row.broken_only_by_plain} point(s) at eps={row.eps:g} that the "
            f"adaptive ones did not: robust accuracy under both passes is {row.robust_under_both:.1%}, below this "
            f"pass's {row.adaptive_robust_accuracy:.1%}.",
        ))
    return flags
