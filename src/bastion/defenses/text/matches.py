"""What the output guard's scanners report: a :class:`Match` per span found, and the spans already :class:`Taken`.

The canary, secret and PII scanners of :func:`~bastion.defenses.text.output.screen_output` each return
matches. The secret and PII scanners share one :class:`Taken`, so that a later scanner skips a span that an
earlier, more specific one claimed; each match then becomes an output-layer
:class:`~bastion.defenses.text.findings.Finding`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from bastion.defenses.text.findings import Finding, quote


@dataclass(frozen=True)
class Match:
    """One span of a reply that a scanner flagged: what it is, where, why, and the evidence to quote."""

    category: str
    rule: str
    start: int
    end: int
    reason: str
    evidence: str

    def finding(self) -> Finding:
        """This match as an output-layer finding (its evidence quoted and cut to length)."""
        return Finding(layer="output", category=self.category, rule=self.rule, reason=self.reason,
                       evidence=quote(self.evidence), span=(self.start, self.end))


class Taken:
    """Non-overlapping spans already claimed, kept sorted so that an overlap test is a binary search."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self._starts, end)  # spans starting before `end`; the last of them ends latest
        return i > 0 and self._ends[i - 1] > start

    def add(self, start: int, end: int) -> None:
        i = bisect.bisect_left(self._starts, start)
        self._starts.insert(i, start)
        self._ends.insert(i, end)


def mask(value: str) -> str:
    """The first four characters of a secret or personal datum and an ellipsis: enough to recognise it."""
    return value[:4] + "…"
