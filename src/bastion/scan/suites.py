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

Square perturbs square patches of an image, so for a model whose inputs are not images (a tabular
scikit-learn model, say) a suite runs the label-only HopSkipJump in its place, the black-box check that works
on inputs of any shape.
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


#: A suite's attack that needs image inputs, and what the suite runs in its place on other inputs.
NON_IMAGE_STAND_INS: dict[str, SuiteEntry] = {"square": ("hopskipjump", {})}


def build_attacks(suite: str | None = None, attacks: list[str] | None = None, *,
                  input_shape: tuple[int, ...] | None = None) -> list[EvasionAttack]:
    """The attacks of a named suite, or of an explicit list of registered names (defaults each).

    ``input_shape`` (one sample's, e.g. ``(1, 28, 28)`` or ``(64,)``): when it is not an image's (two or three
    dimensions), a suite's image-only attacks are replaced by their stand-ins (``NON_IMAGE_STAND_INS``), unless
    the suite runs the stand-in already. An explicit list is taken as given.
    """
    if attacks:
        return [ATTACKS.create(name) for name in attacks]
    if suite not in SUITES:
        raise ConfigError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    entries = SUITES[suite]
    if input_shape is not None and len(input_shape) not in (2, 3):
        entries = _without_image_attacks(entries)
    return [ATTACKS.create(name, **params) for name, params in entries]


def _without_image_attacks(entries: list[SuiteEntry]) -> list[SuiteEntry]:
    """``entries`` with each image-only attack replaced by its stand-in, or dropped if the suite runs that already."""
    present = {name for name, _ in entries}
    kept = []
    for name, params in entries:
        stand_in = NON_IMAGE_STAND_INS.get(name)
        if stand_in is None:
            kept.append((name, params))
        elif stand_in[0] not in present:
            kept.append(stand_in)
    return kept
