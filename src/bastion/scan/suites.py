"""Named attack suites. Each entry is ``(registered attack name, parameters)``.

- ``quick``: FGSM then PGD-40 — minutes, catches undefended models.
- ``standard``: APGD-CE, APGD-T (9 target classes) and Square — AutoAttack's recipe without the slow
  FAB-T, and with Square at 1,000 queries instead of 5,000: after the two APGD runs Square rarely
  breaks another point of a model that does not mask gradients, and when it does the scan flags it.
- ``full``: every registered evasion attack, white-box, score-based and label-only, with Square at
  AutoAttack's 5,000 queries.
"""

from __future__ import annotations

from typing import Any

from bastion.attacks import ATTACKS, EvasionAttack
from bastion.core.errors import ConfigError

SuiteEntry = tuple[str, dict[str, Any]]

SUITES: dict[str, list[SuiteEntry]] = {
    "quick": [("fgsm", {}), ("pgd", {"steps": 40})],
    "standard": [("apgd-ce", {}), ("apgd-t", {}), ("square", {"queries": 1000})],
    "full": [
        ("fgsm", {}),
        ("pgd", {"steps": 40}),
        ("apgd-ce", {}),
        ("apgd-t", {}),
        ("cw-l2", {}),
        ("square", {"queries": 5000}),
        ("hopskipjump", {}),
    ],
}


def build_attacks(suite: str | None = None, attacks: list[str] | None = None) -> list[EvasionAttack]:
    """The attacks of a named suite, or of an explicit list of registered names (defaults each)."""
    if attacks:
        return [ATTACKS.create(name) for name in attacks]
    if suite not in SUITES:
        raise ConfigError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    return [ATTACKS.create(name, **params) for name, params in SUITES[suite]]
