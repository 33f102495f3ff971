"""The prompt guard: normalisation, then rules, then a learned classifier, over every decoded layer of a text.

Layers, in order (each verdict's findings say which fired and why):

1. **normalize** (:func:`bastion.defenses.text.normalize.normalize`): Unicode NFKC, invisible and bidi
   control characters and homoglyphs exposed and counted, Base64/hex/URL/ROT13/reversed payloads decoded
   into further *views* of the text. These findings explain how something was hidden; on their own they do
   not flag a prompt (a pasted Base64 blob or an emoji's zero-width joiner is ordinary), except smuggled
   Unicode tag characters, which have no ordinary use in a prompt.
2. **rules** (:func:`bastion.defenses.text.rules.match_rules`): instruction override, role-play,
   system-prompt extraction, delimiter and markup tricks, over every view.
3. **classifier** (:class:`bastion.defenses.text.classifier.InjectionClassifier`): logistic regression on
   all-MiniLM-L6-v2 sentence embeddings, over the normalised text and each decoded view; it catches
   phrasings no rule lists. It is skipped when a rule already fired on the normalised text (the verdict
   cannot change) unless ``exhaustive`` is set.

A prompt is flagged when a rule fires, the classifier's probability reaches its threshold, or tag
characters smuggle text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from bastion.core.errors import InputError
from bastion.defenses.text.findings import Finding, Verdict, quote
from bastion.defenses.text.limits import check_text
from bastion.defenses.text.normalize import TextView, normalize
from bastion.defenses.text.rules import match_rules

if TYPE_CHECKING:
    from bastion.defenses.text.classifier import InjectionClassifier

#: The default limit on a screened text: 1 MiB of characters.
DEFAULT_MAX_CHARS = 1_048_576

#: Normalisation findings that flag a prompt on their own.
FLAGGING_NORMALIZE_RULES = frozenset({"unicode-tags"})


def check_threshold(name: str, value: float | None) -> None:
    """Raise ``InputError`` naming ``name`` unless ``value`` is ``None`` or strictly between 0 and 1."""
    if value is not None and not 0.0 < value < 1.0:
        raise InputError(f"{name} must be strictly between 0 and 1, got {value!r}")


class PromptGuard:
    """Screen prompts (or retrieved documents) for injected instructions.

    Args:
        classifier: ``"default"`` (the classifier shipped with bastion, loaded on first use), a fitted
            :class:`InjectionClassifier`, or ``None`` for rules only.
        threshold: the classifier probability that flags a prompt, in (0, 1); default ``None``, the classifier's
            own.
        long_threshold: the probability that flags, instead, a prompt (or decoded view) over 256 characters, which
            the classifier scores by its most suspicious piece, in (0, 1); default ``None``: ``threshold`` (or the
            classifier's own long threshold, where its file sets one; bastion's does not). A higher one flags
            fewer long benign texts and misses more long attacks, and an attacker can pad a short injection past
            256 characters to be judged by it: bastion's classifier file records the one its training chose
            (``training.cross_validation.long_texts``) for those who accept that trade.
        max_chars: the longest text screened, at least 1 (default 1,048,576); longer raises ``InputError``.
        max_depth: decodings nested in one another that are followed (default 3).
        exhaustive: run the classifier even when a rule has fired (default ``False``), so that every
            layer's findings are listed.
    """

    def __init__(self, *, classifier: InjectionClassifier | Literal["default"] | None = "default",
                 threshold: float | None = None, long_threshold: float | None = None,
                 max_chars: int = DEFAULT_MAX_CHARS, max_depth: int = 3, exhaustive: bool = False) -> None:
        check_threshold("threshold", threshold)
        check_threshold("long_threshold", long_threshold)
        if max_chars < 1:
            raise InputError(f"max_chars must be at least 1, got {max_chars!r}")
        self.classifier = classifier
        self.threshold = threshold
        self.long_threshold = long_threshold
        self.max_chars = max_chars
        self.max_depth = max_depth
        self.exhaustive = exhaustive

    def get_params(self) -> dict[str, object]:
        """The ``__init__`` parameters, for the evidence record (the classifier by its description)."""
        classifier = self.classifier
        described = classifier if classifier is None or isinstance(classifier, str) else classifier.get_params()
        return {"classifier": described, "threshold": self.threshold, "long_threshold": self.long_threshold,
                "max_chars": self.max_chars,
                "max_depth": self.max_depth, "exhaustive": self.exhaustive}

    def screen(self, text: str) -> Verdict:
        """The verdict on ``text`` (any string up to ``max_chars`` characters).

        Raises:
            InputError: ``text`` is not a string, or is longer than ``max_chars``.
        """
        check_text(text, self.max_chars, "prompt")
        normalized = normalize(text, max_depth=self.max_depth)
        findings = list(normalized.findings)
        ruled = match_rules(normalized.views)
        findings += ruled
        model = self._model()
        probability, threshold = 0.0, None
        if model is not None and (self.exhaustive or not any(not finding.path for finding in ruled)):
            learned, probability, threshold = self._classify(model, normalized.views)
            findings += learned
        flagging = [finding for finding in findings
                    if finding.layer != "normalize" or finding.rule in FLAGGING_NORMALIZE_RULES]
        score = max([probability, *(1.0 if finding.score is None else finding.score for finding in flagging)])
        return Verdict(flagged=bool(flagging), score=score,
                       categories=sorted({finding.category for finding in findings if finding in flagging}),
                       findings=findings, stats=dict(normalized.stats), threshold=threshold)

    def _model(self) -> InjectionClassifier | None:
        if self.classifier == "default":
            from bastion.defenses.text.classifier import load_default

            self.classifier = load_default()
        return self.classifier if not isinstance(self.classifier, str) else None

    def _classify(self, model: InjectionClassifier, views: Sequence[TextView]
                  ) -> tuple[list[Finding], float, float]:
        """Findings where a view's probability reaches the threshold, the highest probability, and the threshold
        that applied to the view with that probability."""
        from bastion.defenses.text.classifier import deciding_span, describe

        probabilities, parts = model.score([view.text for view in views], threshold=self.threshold,
                                           long_threshold=self.long_threshold)
        findings = []
        for row, (view, probability) in enumerate(zip(views, probabilities.tolist(), strict=True)):
            if probability >= parts["threshold"][row]:
                where = " (after decoding " + " then ".join(view.path) + ")" if view.path else ""
                span = deciding_span(parts, row)
                findings.append(Finding(
                    layer="classifier", category="learned", rule="classifier", path=list(view.path),
                    score=round(float(probability), 4), span=span,
                    evidence=quote(view.text[span[0]:span[1]].strip()) if span else "",
                    reason=describe(probability, parts, row) + where
                    + ("; the quoted part scored highest" if span else "")))
        highest = int(probabilities.argmax())
        return findings, round(float(probabilities[highest]), 4), float(parts["threshold"][highest])
