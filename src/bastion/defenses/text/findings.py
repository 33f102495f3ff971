"""What the text guard reports: one :class:`Finding` per reason to distrust a text, and a :class:`Verdict`.

Every layer of the guard (normalisation, rules, the learned classifier, the output guard) reports in
these types, so that a verdict always says which layer fired and why.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: The layer of the guard that produced a finding.
Layer = Literal["normalize", "rules", "classifier", "output"]

#: Prompt categories (input guard) and output categories (output guard).
PROMPT_CATEGORIES = ("instruction-override", "role-play", "prompt-extraction", "delimiter", "hidden-text",
                     "encoded", "learned")
OUTPUT_CATEGORIES = ("secret", "pii", "canary")

#: How many characters of matched text a finding quotes (the rest is cut, with an ellipsis).
EVIDENCE_CHARS = 80


class Finding(BaseModel):
    """One reason to distrust a text.

    Attributes:
        layer: the guard layer that found it.
        category: one of :data:`PROMPT_CATEGORIES` or :data:`OUTPUT_CATEGORIES`.
        rule: a stable identifier of the rule or signal (``"override.ignore-previous"``, ``"base64"``,
            ``"secret.aws-access-key"``, ``"classifier"``).
        reason: one sentence for a person: what was found and why it matters.
        evidence: the matched text, at most :data:`EVIDENCE_CHARS` characters (secrets are masked).
        path: the decodings that exposed it, outermost first (``["base64", "rot13"]``); empty when
            the text was readable as sent.
        span: ``(start, end)`` character offsets in the text of that decoding layer, or ``None``.
        score: a probability or strength in [0, 1] where the layer has one (the classifier's), else ``None``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    layer: Layer
    category: str
    rule: str
    reason: str
    evidence: str = ""
    path: list[str] = Field(default_factory=list)
    span: tuple[int, int] | None = None
    score: float | None = None


def quote(text: str, limit: int = EVIDENCE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis where it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Verdict(BaseModel):
    """The guard's answer for one text.

    Attributes:
        flagged: ``True`` when any finding is at or above the guard's threshold (see ``score``).
        score: the strongest signal in [0, 1]: 1.0 for a rule match, else the classifier's highest probability.
        categories: the categories of the findings, sorted, without repeats.
        findings: every finding, in the order the layers ran.
        redacted: for the output guard, the text with every secret, PII match and canary masked;
            ``None`` for the input guard.
        stats: counts from normalisation (``invisible``, ``bidi``, ``homoglyphs``, ``decoded_layers``) and
            the characters scanned.
        threshold: the learned classifier's threshold for the view of the text (as sent, or a decoding) it gave
            its highest probability, the long-text threshold where that view was read by pieces, so the classifier's
            score can be read against it; ``None`` when the classifier did not run (rules only, a rule matched the
            text as sent and the guard is not exhaustive, or the output guard).
    """

    model_config = ConfigDict(extra="forbid")

    flagged: bool
    score: float
    categories: list[str]
    findings: list[Finding]
    redacted: str | None = None
    stats: dict[str, int] = Field(default_factory=dict)
    threshold: float | None = None
