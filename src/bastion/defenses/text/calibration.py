"""Calibrating the prompt guard's threshold on benign prompts: the lowest classifier threshold at which the whole
guard flags at most a chosen share of them.

The acceptance measure of a prompt-injection screen is its false-positive rate on benign prompts full of trigger
words ("ignore the noise in this recording", "act as a tour guide"). :func:`calibrate` screens such prompts once
with the rules (and the other layers that flag on their own) and scores them once with the classifier, then
picks the lowest threshold in ``[LOWEST, HIGHEST]`` (steps of ``STEP``) at which the rules' flags and the
classifier's together stay within ``max_fpr``. bastion's classifier is calibrated this way on
``data/calibration_trigger.yaml`` (benign prompts written for the purpose, never trained on, sharing no phrasing
with the eval split); ``bastion guard calibrate --data`` does the same on a team's own benign traffic.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from bastion.core.errors import InputError
from bastion.defenses.text.corpus import read_labelled_jsonl
from bastion.defenses.text.guard import DEFAULT_MAX_CHARS, PromptGuard
from bastion.defenses.text.normalize import normalize

if TYPE_CHECKING:
    from bastion.defenses.text.classifier import InjectionClassifier

#: The shipped calibration set: benign prompts full of trigger words (Apache-2.0), in ``data/``.
CALIBRATION_FILE = "calibration_trigger.yaml"
#: The default bound on the share of calibration prompts the guard may flag.
MAX_FPR = 0.04
#: A calibration needs enough prompts that this many false alarms are allowed at its bound: with fewer, the lowest
#: threshold that flags none of a handful of prompts says little about the next thousand (ceil(5 / 0.04) = 125).
MIN_ALLOWED_FALSE_ALARMS = 5
#: ... and never more than this many prompts, the need at a bound of 1% (or of 0).
MAX_TEXTS_NEEDED = 500
#: The range and step of the thresholds tried. The lowest stays above the classifier's gate (``skip_below``, at
#: most 0.2), so one scoring serves every threshold.
LOWEST, HIGHEST, STEP = 0.30, 0.95, 0.001


@dataclass(frozen=True)
class Calibration:
    """The outcome of :func:`calibrate`.

    Attributes:
        threshold: the classifier threshold chosen, or ``None`` where none in the range keeps the guard within
            ``max_fpr`` (for instance when the rules alone flag more).
        max_fpr: the bound on the share of prompts flagged.
        texts: the number of calibration prompts.
        flagged: prompts the whole guard flags at ``threshold`` (at ``HIGHEST`` when ``threshold`` is ``None``).
        flagged_by_rules: prompts the layers other than the classifier flag (no threshold moves these).
        previous_threshold: the classifier's threshold before calibration.
        source: where the prompts came from.
        sha256: the hex SHA-256 of the prompts (JSON list, UTF-8).
    """

    threshold: float | None
    max_fpr: float
    texts: int
    flagged: int
    flagged_by_rules: int
    previous_threshold: float
    source: str
    sha256: str

    def as_record(self) -> dict[str, Any]:
        """The calibration as a JSON-ready dict, with the rule that chose the threshold."""
        return {**asdict(self), "rule": f"lowest threshold in [{LOWEST}, {HIGHEST}] (steps of {STEP}) at which the "
                f"whole guard flags at most {self.max_fpr:.1%} of the calibration prompts"}


def shipped_calibration_texts() -> list[str]:
    """The prompts of bastion's calibration set (``data/calibration_trigger.yaml``), in file order.

    Raises:
        InputError: the file is missing or not a calibration set (families with lists of texts).
    """
    resource = resources.files("bastion.defenses.text").joinpath("data", CALIBRATION_FILE)
    try:
        spec = yaml.safe_load(resource.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise InputError(f"the calibration set {CALIBRATION_FILE} is missing; reinstall bastion") from error
    families = spec.get("families") if isinstance(spec, dict) else None
    if not isinstance(families, list) or not all(
            isinstance(family, dict) and isinstance(family.get("texts"), list) for family in families):
        raise InputError(f"{CALIBRATION_FILE} is not a calibration set: it needs 'families', each with 'texts'")
    return [text for family in families for text in family["texts"]]


def read_benign_texts(path: str | Path) -> list[str]:
    """The prompts of a team's benign calibration file: JSON lines with a ``"text"`` each and, if given, a benign
    ``"label"`` (``0`` or ``"benign"``), read by :func:`~bastion.defenses.text.corpus.read_labelled_jsonl`.

    Raises:
        InputError: the file is missing, empty or not UTF-8, a line is not a JSON object with a string ``"text"``,
            a line is labelled as an injection, or its text is empty or over the guard's default limit (the message
            names the line).
    """
    return [example.text for example in read_labelled_jsonl(path, benign_only=True, max_chars=DEFAULT_MAX_CHARS)]


def texts_needed(max_fpr: float) -> int:
    """How many benign prompts a calibration at the bound ``max_fpr`` needs: enough that
    :data:`MIN_ALLOWED_FALSE_ALARMS` of them may be flagged, at most :data:`MAX_TEXTS_NEEDED`."""
    if max_fpr <= 0:
        return MAX_TEXTS_NEEDED
    return min(MAX_TEXTS_NEEDED, math.ceil(MIN_ALLOWED_FALSE_ALARMS / max_fpr - 1e-9))


def calibrate(classifier: InjectionClassifier, texts: Sequence[str], *, max_fpr: float = MAX_FPR,
              source: str = CALIBRATION_FILE, max_depth: int = 3, min_texts: int | None = None) -> Calibration:
    """The lowest classifier threshold at which the whole guard flags at most ``max_fpr`` of ``texts``.

    Args:
        classifier: a fitted classifier; it is not changed (see :func:`apply_calibration`).
        texts: benign prompts, at least ``min_texts``.
        max_fpr: the bound, in [0, 1) (default :data:`MAX_FPR`).
        source: where ``texts`` came from, for the record.
        max_depth: decodings followed, as :class:`~bastion.defenses.text.guard.PromptGuard`'s (default 3).
        min_texts: the fewest prompts accepted (default :func:`texts_needed` of ``max_fpr``: 125 at 4%).

    Raises:
        InputError: fewer texts than ``min_texts``, a text that is not a string, or ``max_fpr`` out of range.
    """
    if not (isinstance(max_fpr, (int, float)) and 0.0 <= max_fpr < 1.0):
        raise InputError(f"max_fpr must be at least 0 and under 1, got {max_fpr!r}")
    needed = max(1, texts_needed(max_fpr) if min_texts is None else min_texts)
    if len(texts) < needed:
        raise InputError(f"calibrating at a bound of {max_fpr:.1%} needs at least {needed} benign "
                         f"prompt{'s' if needed > 1 else ''} (enough "
                         f"that {MIN_ALLOWED_FALSE_ALARMS} may be flagged), got {len(texts)}; give more of your "
                         "traffic, or a higher bound (--max-fpr)")
    if not all(isinstance(text, str) for text in texts):
        raise InputError("calibration prompts must be strings")
    rules_only = PromptGuard(classifier=None, max_depth=max_depth)
    fixed = np.array([rules_only.screen(text).flagged for text in texts])
    ruled = int(fixed.sum())
    probability = np.zeros(len(texts))
    for row, text in enumerate(texts):
        moving, flagged_long = _classifier_reads(classifier, text, max_depth)
        probability[row] = moving
        fixed[row] |= flagged_long
    allowed = int(np.floor(max_fpr * len(texts) + 1e-9))
    chosen, flagged = None, int((fixed | (probability >= HIGHEST)).sum())
    for step in range(round((HIGHEST - LOWEST) / STEP) + 1):
        threshold = round(LOWEST + step * STEP, 3)
        count = int((fixed | (probability >= threshold)).sum())
        if count <= allowed:
            chosen, flagged = threshold, count
            break
    digest = hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode()).hexdigest()
    return Calibration(threshold=chosen, max_fpr=max_fpr, texts=len(texts), flagged=flagged,
                       flagged_by_rules=ruled, previous_threshold=float(classifier.threshold),
                       source=source, sha256=digest)


def apply_calibration(classifier: InjectionClassifier, calibration: Calibration) -> InjectionClassifier:
    """Set ``classifier``'s threshold to the calibrated one (unchanged where ``calibration.threshold`` is
    ``None``) and record the calibration under ``training_["calibration"]``; returns ``classifier``."""
    if calibration.threshold is not None:
        classifier.threshold = calibration.threshold
    classifier.training_["calibration"] = {**calibration.as_record(), "applied": calibration.threshold is not None}
    return classifier


def _classifier_reads(classifier: InjectionClassifier, text: str, max_depth: int) -> tuple[float, bool]:
    """How the guard's classifier reads ``text`` and its decodings (the views it scores): the highest probability
    among the views judged by the short-text threshold (the one calibrated), and whether a view judged by the
    classifier file's own long-text threshold, where it sets one, reaches it (no calibration moves that)."""
    views = [view.text for view in normalize(text, max_depth=max_depth).views]
    probabilities, parts = classifier.score(views, threshold=LOWEST, long_threshold=classifier.long_threshold)
    moving = parts["threshold"] == LOWEST
    highest = float(probabilities[moving].max()) if moving.any() else 0.0
    return highest, bool((probabilities[~moving] >= parts["threshold"][~moving]).any())
