"""Named attack suites. Each entry is ``(registered attack name, parameters)``.

- ``quick``: FGSM then PGD-40 with two restarts (the second runs only on the few points the first
  left standing) — seconds, catches undefended models.
- ``standard``: APGD-CE, APGD-T and Square — AutoAttack's recipe without the slow FAB-T, with two
  budgets cut where the cascade measured no return (benchmarks/RESULTS.md): APGD-T runs on the 3
  most likely wrong classes instead of 9 (on a PGD-trained Fashion-MNIST CNN, targets ranked 2 to 9
  broke no point that rank 1 had not), and Square gets 500 queries instead of 5,000 (after APGD it
  broke nothing there even with 1,000; it stays as the black-box check that exposes gradient masking).
- ``full``: every registered evasion attack, white-box, score-based and label-only, with APGD-T on
  9 targets and Square at 5,000 queries as in AutoAttack.
"""

from __future__ import annotations

from typing import Any

from bastion.attacks import ATTACKS, EvasionAttack
from bastion.core.errors import ConfigError

SuiteEntry = tuple[str, dict[str, Any]]

SUITES: dict[str, list[SuiteEntry]] = {
    "quick": [("fgsm", {}), ("pgd", {"steps": 40, "restarts": 2})],
    "standard": [("apgd-ce", {}), ("apgd-t", {"n_target_classes": 3}), ("square", {"queries": 500})],
    "full": [
        ("fgsm", {}),
        ("pgd", {"steps": 40}),
        ("apgd-ce", {}),
        ("apgd-t", {"n_target_classes": 9}),
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
