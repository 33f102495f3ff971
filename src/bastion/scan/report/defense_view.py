"""What the HTML report shows for a defended scan: the defense, and plain vs adaptive side by side."""

from __future__ import annotations

import json
from dataclasses import dataclass

from bastion.core.records import AttackSummary, ScanRecord
from bastion.scan.defense_record import DefenseScanRecord, DefenseStepRef, PassComparison


@dataclass(frozen=True)
class AttackPair:
    """One attack's share of the cascade in each pass (``None`` where it is missing from a pass)."""

    name: str
    plain: AttackSummary | None
    adaptive: AttackSummary | None


@dataclass(frozen=True)
class EpsPair:
    """The comparison at one eps and the attacks of both passes."""

    row: PassComparison
    attacks: list[AttackPair]


@dataclass(frozen=True)
class StepLine:
    """One preprocessing step with its parameters as JSON."""

    step: DefenseStepRef
    params: str


@dataclass(frozen=True)
class DefenseView:
    """Everything the template's defense section needs."""

    record: DefenseScanRecord
    headline: PassComparison
    hides_gradients: bool
    steps: list[StepLine]
    pairs: list[EpsPair]


def defense_view(defense: DefenseScanRecord | None, adaptive: ScanRecord) -> DefenseView | None:
    """The view of ``defense`` against the headline (adaptive) record, or ``None`` for an undefended scan."""
    if defense is None or not defense.comparison:
        return None
    steps = [StepLine(step, json.dumps(step.params, ensure_ascii=False, sort_keys=True))
             for step in defense.defense.steps]
    pairs = [
        EpsPair(row, _attack_pairs(plain.attacks, result.attacks))
        for row, plain, result in zip(defense.comparison, defense.plain.results, adaptive.results, strict=False)
    ]
    return DefenseView(record=defense, headline=defense.comparison[0], hides_gradients=defense.hides_gradients,
                       steps=steps, pairs=pairs)


def _attack_pairs(plain: list[AttackSummary], adaptive: list[AttackSummary]) -> list[AttackPair]:
    by_name = {attack.name: attack for attack in plain}
    pairs = [AttackPair(attack.name, by_name.pop(attack.name, None), attack) for attack in adaptive]
    return pairs + [AttackPair(name, attack, None) for name, attack in by_name.items()]
