""""What to do next": advice derived from a scan's numbers, most urgent first.

Each rule looks at one aspect of the record (the gate, the robustness gap, sanity flags, skipped
attacks, weak classes) and returns at most one piece of advice, so adding a rule is one function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bastion.core.records import ClassRow, EpsResult, SanityFlag, ScanRecord
from bastion.scan.report._common import format_eps, percent

Level = Literal["critical", "warning", "info", "ok"]
_LEVEL_ORDER: tuple[Level, ...] = ("critical", "warning", "info", "ok")

#: Robust accuracy below this share of clean accuracy is "not robust".
LOW_ROBUST_SHARE = 0.5
#: A clean-to-robust drop of more than this many points deserves attention.
NOTABLE_DROP = 0.10
#: Below this clean accuracy, robustness numbers say little about the model.
LOW_CLEAN_ACCURACY = 0.5
#: A class this far below the overall robust accuracy is called out.
WEAK_CLASS_MARGIN = 0.15

#: Flags a defended scan adds to describe how it evaluated, not to doubt the evaluation.
CONTEXT_CHECKS = frozenset({"adaptive-evaluation", "randomised-defense"})
#: The flag a defended scan raises when plain attacks overstate the defense's robustness.
HIDING_CHECK = "defense-hides-gradients"
#: The flag raised when only the plain gradient attacks were fooled (black-box attacks made up for them).
FOOLING_CHECK = "defense-fools-gradient-attacks"

# Why each kind of sanity flag matters, matched on words in the flag's ``check`` name (first match wins,
# so the defended-scan checks come before the generic "random" and "gradient" ones).
_FLAG_EXPLANATIONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("hides-gradients",),
     "Plain gradient attacks failed because the preprocessing gives them a zero or useless gradient "
     "(rounding, quantisation, randomness), not because the model resists them. The adaptive attack "
     "(BPDA: the real step forward, the identity backward; EOT: gradients averaged over the randomness) "
     "measures the real robustness: only the adaptive number counts."),
    (("fools-gradient-attacks",),
     "The preprocessing broke the gradients the plain white-box attacks follow, so they failed where the "
     "adaptive ones (BPDA/EOT) succeed. The score-based or label-only attacks of the suite found those points "
     "anyway, so the overall number holds; a gradient-only evaluation of this defense would not."),
    (("plain-beats-adaptive",),
     "Neither pass alone found every break, so the per-sample worst case over both passes (robust under "
     "both, in defense.json) is the better estimate. More EOT samples (`--eot-samples`) or a stronger "
     "suite usually close the difference."),
    (("adaptive-evaluation",),
     "A preprocessing defense is only credible against an attack that knows about it, so the suite ran "
     "again with BPDA/EOT gradients and the headline is that adaptive pass; the plain pass is kept to "
     "show how much a naive evaluation would overstate."),
    (("randomised-defense",),
     "The defense's randomness is keyed on each input, so the defended model is a fixed function and "
     "every reported break reproduces; the adaptive attack averaged gradients over fresh draws (EOT)."),
    (("prob", "softmax", "logit"),
     "The model seems to output probabilities rather than logits. Saturated softmax outputs give "
     "near-zero gradients, so gradient attacks stall and robustness is overestimated. Wrap the "
     "model so it returns logits, then scan again."),
    (("random", "stochastic", "nondetermin"),
     "The model gives different outputs for the same input. Randomness hides the true gradient "
     "(obfuscated gradients); evaluate with an adaptive attack that averages over the randomness "
     "(EOT) before trusting these numbers."),
    (("zero", "vanish", "gradient", "grad"),
     "Gradients are zero or vanishing for many inputs. This is a classic sign of gradient masking "
     "(e.g. a non-differentiable preprocessing step); use BPDA/EOT or score/label-only attacks."),
    (("black", "transfer", "score", "label"),
     "A black-box attack broke points that white-box attacks could not. White-box attacks should "
     "be at least as strong, so the gradients are probably misleading (gradient masking)."),
    (("monoton", "eps", "budget"),
     "Robust accuracy does not fall as the budget grows. A stronger attack should never do worse, "
     "so the attacks are likely not converging; raise steps or restarts."),
)
_GENERIC_EXPLANATION = (
    "This check suggests the attacks may not have found the worst case, so the robust accuracy "
    "shown here may be higher than the model's true robustness."
)


@dataclass(frozen=True)
class Advice:
    """One recommendation: how urgent, a one-line title and a sentence or two of detail."""

    level: Level
    title: str
    detail: str


def advise(record: ScanRecord) -> list[Advice]:
    """Every piece of advice the record's numbers call for, most urgent first."""
    found = [advice for rule in _RULES if (advice := rule(record)) is not None]
    return sorted(found, key=lambda advice: _LEVEL_ORDER.index(advice.level))


def explain_flag(flag: SanityFlag) -> str:
    """Why a sanity flag matters and what to do about it, in plain words."""
    check = flag.check.lower()
    for words, explanation in _FLAG_EXPLANATIONS:
        if any(word in check for word in words):
            return explanation
    return _GENERIC_EXPLANATION


def _gate(record: ScanRecord) -> Advice | None:
    threshold = record.config.fail_under
    headline = record.headline
    if threshold is None:
        return Advice("info", "No release gate set",
                      "Pass --fail-under to make this scan fail a CI job when robust accuracy "
                      "at the headline budget drops below a threshold.")
    if record.passed():
        return None
    return Advice("critical", "Release gate fails",
                  f"Robust accuracy {percent(headline.robust_accuracy)} at ε = "
                  f"{format_eps(headline.eps)} is below the fail-under threshold "
                  f"{percent(threshold)}. Do not release this model as is.")


def _robustness(record: ScanRecord) -> Advice | None:
    headline = record.headline
    drop = headline.clean_accuracy - headline.robust_accuracy
    where = f"at ε = {format_eps(headline.eps)}"
    numbers = (f"clean {percent(headline.clean_accuracy)} → robust "
               f"{percent(headline.robust_accuracy)} {where}")
    if headline.robust_accuracy < LOW_ROBUST_SHARE * headline.clean_accuracy:
        return Advice("critical", "The model is not robust at this budget",
                      f"Accuracy collapses under attack ({numbers}). Consider adversarial "
                      "training (`bastion train --adversarial-eps EPS`, PGD adversarial training), "
                      "then scan again to measure the gain and the clean-accuracy cost.")
    if drop > NOTABLE_DROP:
        return Advice("warning", "Robustness costs noticeable accuracy",
                      f"Attacks remove {percent(drop)} of accuracy ({numbers}). "
                      "Adversarial training (`bastion train --adversarial-eps EPS`) can narrow the gap; "
                      "compare the two scans before release.")
    return Advice("ok", "Robust accuracy holds up at the headline budget",
                  f"Only {percent(max(drop, 0.0))} lost ({numbers}). Confirm with a stronger "
                  "suite or certification before claiming robustness.")


def _clean_accuracy(record: ScanRecord) -> Advice | None:
    clean = record.headline.clean_accuracy
    if clean >= LOW_CLEAN_ACCURACY:
        return None
    return Advice("warning", "Clean accuracy is low",
                  f"The model gets only {percent(clean)} of the scanned data right without "
                  "any attack. Check the input bounds, normalisation and labels before reading "
                  "the robustness numbers.")


def _gradient_hiding(record: ScanRecord) -> Advice | None:
    flags = [flag for result in record.results for flag in result.flags]
    hiding = [flag for flag in flags if flag.check == HIDING_CHECK]
    if hiding:
        return Advice("critical", "This defense hides gradients; its plain robust accuracy is not real",
                      f"{hiding[0].message} The headline is the adaptive number. Preprocessing that only breaks "
                      "gradients adds no real robustness; adversarial training (`bastion train "
                      "--adversarial-eps EPS`) does.")
    fooling = [flag for flag in flags if flag.check == FOOLING_CHECK]
    if fooling:
        return Advice("warning", "This defense hides gradients from gradient attacks",
                      f"{fooling[0].message} Always evaluate it with an adaptive attack, and keep a score-based "
                      "attack (Square) in the suite.")
    return None


def _sanity(record: ScanRecord) -> Advice | None:
    # The defense verdicts are about the plain pass and have their own advice; the headline is adaptive.
    own_rule = CONTEXT_CHECKS | {HIDING_CHECK, FOOLING_CHECK}
    flags = [flag for result in record.results for flag in result.flags if flag.check not in own_rule]
    warnings = [flag for flag in flags if flag.severity == "warning"]
    if not flags:
        return None
    checks = ", ".join(sorted({flag.check for flag in flags}))
    level: Level = "warning" if warnings else "info"
    return Advice(level, "The evaluation may be unreliable",
                  f"{len(flags)} sanity check(s) raised a flag ({checks}). Robust accuracy may "
                  "be overestimated; see the sanity-flag section for what each one means.")


def _skipped(record: ScanRecord) -> Advice | None:
    skipped = {
        attack.name: attack.skipped
        for result in record.results for attack in result.attacks if attack.skipped
    }
    if not skipped:
        return None
    names = ", ".join(f"{name} ({reason})" for name, reason in sorted(skipped.items()))
    return Advice("info", "Some attacks did not run",
                  f"Skipped: {names}. The robust accuracy only reflects the attacks that ran; "
                  "give the scan the access those attacks need to include them.")


def _weak_classes(record: ScanRecord) -> Advice | None:
    weak = weakest_classes(record.headline)
    if not weak:
        return None
    names = ", ".join(f"{row.name} ({percent(row.robust_accuracy)})" for row in weak)
    return Advice("warning", "Some classes are much weaker than the rest",
                  f"Robust accuracy per class is lowest for {names}, against "
                  f"{percent(record.headline.robust_accuracy)} overall. More (or augmented) "
                  "training data for these classes, or class-balanced adversarial training, helps.")


def weakest_classes(result: EpsResult, limit: int = 3) -> list[ClassRow]:
    """Up to ``limit`` classes whose robust accuracy is well below the overall, weakest first."""
    cutoff = result.robust_accuracy - WEAK_CLASS_MARGIN
    weak = [row for row in result.per_class if row.count > 0 and row.robust_accuracy < cutoff]
    return sorted(weak, key=lambda row: row.robust_accuracy)[:limit]


_RULES: tuple[Callable[[ScanRecord], Advice | None], ...] = (
    _gate, _gradient_hiding, _robustness, _clean_accuracy, _sanity, _skipped, _weak_classes,
)
