"""The record every audit returns: one score and one flag per sample id.

Scores follow one convention across audits: *higher = more suspicious* (more duplicated, further
out, likelier mislabelled, likelier poisoned). What a score means in units, and how the flag was
decided, is in the audit's ``params`` and ``summary``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class AuditResult(BaseModel):
    """One audit over a set of samples.

    Attributes:
        name: the audit (``exact-duplicates``, ``near-duplicates``, ``leakage``, ``outliers``,
            ``label-issues``, ``spectral-signatures``, ``activation-clustering``, ``poison-consensus``).
        params: its configuration, for the evidence record.
        ids: the samples audited, by id (for ``leakage``: the test samples).
        scores: one per id, higher = more suspicious.
        flags: one per id, true = the audit suspects the sample.
        summary: audit-specific totals and details (counts, groups, thresholds, suggested labels).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    ids: list[str]
    scores: list[float]
    flags: list[bool]
    summary: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _same_lengths(self) -> AuditResult:
        if not len(self.ids) == len(self.scores) == len(self.flags):
            raise ValueError(f"ids, scores and flags must have one entry per sample; got {len(self.ids)}, "
                             f"{len(self.scores)} and {len(self.flags)}")
        return self

    @property
    def flagged_count(self) -> int:
        return sum(self.flags)

    def flagged_ids(self) -> list[str]:
        """Ids of the flagged samples, most suspicious first."""
        order = sorted((i for i, flag in enumerate(self.flags) if flag), key=lambda i: -self.scores[i])
        return [self.ids[i] for i in order]

    def score_of(self) -> dict[str, float]:
        """Score by id."""
        return dict(zip(self.ids, self.scores, strict=True))

    def top(self, count: int) -> list[tuple[str, float]]:
        """The ``count`` highest-scoring ``(id, score)`` pairs, flagged or not."""
        order = sorted(range(len(self.ids)), key=lambda i: -self.scores[i])[:count]
        return [(self.ids[i], self.scores[i]) for i in order]
