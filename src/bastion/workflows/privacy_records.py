"""Evidence records of the privacy and extraction suites of ``bastion scan`` (``privacy.json``, ``extraction.json``).

Like every evidence record they are pydantic models whose JSON is canonical: configuration, seed,
library versions, model hash and dataset hashes, results, and notes on whatever could not run (an
attack the model's access does not allow, defenses that cannot be put in front of a remote endpoint).
The HTML reports render them (:mod:`bastion.workflows.privacy_report`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bastion.attacks.extraction import ExtractionRecord
from bastion.attacks.inference import EpsilonBound, MembershipResult
from bastion.core.records import ArtifactRef, DatasetRef
from bastion.defenses.output import AccuracyCost
from bastion.defenses.training.dp import PrivacyAccounting
from bastion.workflows.output_defenses import OUTPUT_DEFENSES

#: MITRE ATLAS and OWASP ML Top 10 ids of each suite's threats.
PRIVACY_ATLAS_IDS = ["AML.T0024.000", "AML.T0024.001"]  # infer training data membership, invert the model
PRIVACY_OWASP_IDS = ["ML03:2023", "ML04:2023"]  # model inversion, membership inference
EXTRACTION_ATLAS_IDS = ["AML.T0024.002"]  # extract the model
EXTRACTION_OWASP_IDS = ["ML05:2023"]  # model theft


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _known_defenses(names: list[str]) -> list[str]:
    unknown = [name for name in names if name not in OUTPUT_DEFENSES]
    if unknown:
        raise ValueError(f"unknown output defense {unknown[0]!r}; choose from {', '.join(OUTPUT_DEFENSES)}")
    return list(dict.fromkeys(names))


# --- privacy --------------------------------------------------------------------------------------


class PrivacySettings(_Record):
    """What the privacy suite runs.

    Attributes:
        shadows: LiRA's shadow models, >= 2 (default 16); each trains on half the population
            (members and non-members together, as in the LiRA paper).
        shadow_epochs, shadow_batch_size, shadow_lr: each shadow's training (Adam), default 10, 64
            and 1e-3: ``bastion train``'s defaults. Match the target's recipe, or LiRA is miscalibrated.
        shadow_model: ``pkg.module:factory`` building the shadows; ``None`` (default) uses the target's
            own factory when it was loaded from one, and skips LiRA (with a note) otherwise.
        inversion: run MI-Face model inversion when the model gives gradients (default ``True``).
        inversion_steps, inversion_lr, inversion_tv_weight: MI-Face's Adam steps (300), step size (0.05)
            and total-variation prior (0.01 for images, ignored for flat inputs).
        defenses: the output defenses to measure (default all of
            :data:`~bastion.workflows.output_defenses.OUTPUT_DEFENSES`, ``none`` first).
        delta: the delta of the empirical epsilon lower bound; ``None`` (default): ``1 / M`` rounded down to a
            power of ten for ``M`` members, the rule bastion's DP training uses (so the two compare).
        seed: seeds the shadows' split and training, and the noise defense, default 0.
        batch_size: inputs per query, default 512.
    """

    shadows: int = Field(default=16, ge=2)
    shadow_epochs: int = Field(default=10, ge=1)
    shadow_batch_size: int = Field(default=64, ge=1)
    shadow_lr: float = Field(default=1e-3, gt=0)
    shadow_model: str | None = None
    inversion: bool = True
    inversion_steps: int = Field(default=300, ge=1)
    inversion_lr: float = Field(default=0.05, gt=0)
    inversion_tv_weight: float = Field(default=0.01, ge=0)
    defenses: list[str] = Field(default_factory=lambda: list(OUTPUT_DEFENSES))
    delta: float | None = Field(default=None, ge=0, lt=1)
    seed: int = 0
    batch_size: int = Field(default=512, ge=1)

    @field_validator("defenses")
    @classmethod
    def _check_defenses(cls, names: list[str]) -> list[str]:
        return _known_defenses(names)


class MembershipSummary(_Record):
    """The ROC summary of one membership attack, without its per-sample scores."""

    attack: str
    auc: float
    tpr_at_1pct: float
    tpr_at_01pct: float

    @classmethod
    def of(cls, result: MembershipResult) -> MembershipSummary:
        return cls(attack=result.attack, auc=result.auc, tpr_at_1pct=result.tpr_at_1pct,
                   tpr_at_01pct=result.tpr_at_01pct)


class PrivacyDefenseRow(_Record):
    """Membership inference through one output defense, next to what the defense costs.

    ``loss`` is the loss-threshold attack on the hardened answers; through a label-only defense it is
    the gap attack (a correct label means "member"), all that is left of it when only labels come back.
    ``lira`` reuses the shadows trained for the headline (only the target's answers change); ``None``
    when LiRA did not run or cannot read labels. ``cost`` is measured on the non-members (held-out data).
    """

    defense: str
    steps: list[dict[str, Any]] = Field(description="each post-processing step's name and parameters")
    access: Literal["white", "scores", "labels"]
    loss: MembershipSummary
    lira: MembershipSummary | None = None
    cost: AccuracyCost | None = None


class InversionRecord(_Record):
    """MI-Face reconstructions, one per class (``(K, *input_shape)`` as nested lists, in the model's bounds)."""

    classes: list[int]
    reconstructions: list[Any]
    confidences: list[float] = Field(description="the model's probability of each class on its reconstruction")
    steps: int
    params: dict[str, Any]


class PrivacyRecord(_Record):
    """The evidence record of one privacy scan (``privacy.json``).

    ``attacks`` holds the undefended membership attacks in full (scores, truth, ROC curve);
    ``epsilon`` the empirical lower bound on a DP epsilon from the strongest of them; ``accountant``
    the DP accountant's guarantee of the model's training, when ``bastion train --dp-*`` left one
    beside the weights (``<weights>.privacy.json``).
    """

    kind: Literal["privacy"] = "privacy"
    schema_version: int = 1
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    bastion_version: str
    library_versions: dict[str, str]
    config: PrivacySettings
    model: ArtifactRef
    members: DatasetRef
    non_members: DatasetRef
    class_names: list[str]
    bounds: tuple[float, float]
    shadow_model: str | None = Field(default=None, description="the factory the shadows were built by")
    train_accuracy: float = Field(description="the model's accuracy on the members (its training data)")
    test_accuracy: float = Field(description="the model's accuracy on the non-members")
    attacks: list[MembershipResult]
    epsilon: EpsilonBound | None = None
    epsilon_attack: str | None = None
    accountant: PrivacyAccounting | None = None
    inversion: InversionRecord | None = None
    defenses: list[PrivacyDefenseRow]
    endpoint: dict[str, Any] | None = Field(default=None, description="the remote endpoint's settings and "
                                            "samples sent (API key redacted)")
    notes: list[str] = Field(default_factory=list)
    seconds: float
    atlas_ids: list[str] = Field(default_factory=lambda: list(PRIVACY_ATLAS_IDS))
    owasp_ids: list[str] = Field(default_factory=lambda: list(PRIVACY_OWASP_IDS))

    def attack(self, name: str) -> MembershipResult | None:
        """The undefended attack called ``name`` (``"loss-threshold"``, ``"lira"``, ``"gap"``), or ``None``."""
        return next((result for result in self.attacks if result.attack == name), None)

    @property
    def strongest(self) -> MembershipResult | None:
        """The attack with the highest TPR at 1% FPR (then AUC), or ``None`` when none ran."""
        return max(self.attacks, key=lambda r: (r.tpr_at_1pct, r.auc), default=None)


# --- extraction -----------------------------------------------------------------------------------


class ExtractionSettings(_Record):
    """What the extraction suite runs.

    Attributes:
        budget: the most victim queries of each extraction run, default 5000.
        strategies: Knockoff Nets' query strategies, default ``["random", "adaptive"]``.
        copy_model: ``pkg.module:factory`` building the copies; ``None`` (default): the victim's own
            factory when it was loaded from one, else a zoo network for the victim's input shape.
        curve_points: points of each fidelity curve, at budget/2^k (default 5: 1/16 .. 1 of the budget).
        copy_epochs, copy_min_steps, copy_batch_size, copy_lr: each copy's training (Adam), default
            30 epochs with at least 1000 steps, batches of 32, 1e-3 (:class:`CopyTraining`).
        defenses: the output defenses to measure on a local victim (default all, ``none`` first).
        seed: seeds the queries, the bandit, the copies and the noise defense, default 0.
    """

    budget: int = Field(default=5000, ge=1)
    strategies: list[Literal["random", "adaptive"]] = Field(default_factory=lambda: ["random", "adaptive"])
    copy_model: str | None = None
    curve_points: int = Field(default=5, ge=1)
    copy_epochs: int = Field(default=30, ge=1)
    copy_min_steps: int = Field(default=1000, ge=0)
    copy_batch_size: int = Field(default=32, ge=1)
    copy_lr: float = Field(default=1e-3, gt=0)
    defenses: list[str] = Field(default_factory=lambda: list(OUTPUT_DEFENSES))
    seed: int = 0

    @field_validator("defenses")
    @classmethod
    def _check_defenses(cls, names: list[str]) -> list[str]:
        return _known_defenses(names)

    @field_validator("strategies")
    @classmethod
    def _some_strategies(cls, strategies: list[str]) -> list[str]:
        if not strategies:
            raise ValueError("choose at least one strategy of random, adaptive")
        return list(dict.fromkeys(strategies))

    def checkpoints(self) -> list[int]:
        """The curve's query counts: ``budget / 2^k`` for ``k = curve_points - 1 .. 0``, rounded, distinct, >= 1."""
        return sorted({max(1, round(self.budget / 2**k)) for k in range(self.curve_points)})


class ExtractionRun(_Record):
    """One extraction attack: a strategy and what the copy learnt from (probabilities or labels)."""

    name: str = Field(description="e.g. 'knockoff random, probabilities'")
    strategy: Literal["random", "adaptive"]
    record: ExtractionRecord


class ExtractionDefenseRow(_Record):
    """Knockoff (random queries) through one output defense: the copy's fidelity next to the defense's cost."""

    defense: str
    steps: list[dict[str, Any]]
    access: Literal["white", "scores", "labels"]
    targets: Literal["probabilities", "labels"] = Field(description="what the copy was trained on")
    queries: int
    fidelity: float
    accuracy: float | None = None
    cost: AccuracyCost


class ExtractionScanRecord(_Record):
    """The evidence record of one extraction scan (``extraction.json``)."""

    kind: Literal["extraction"] = "extraction"
    schema_version: int = 1
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    bastion_version: str
    library_versions: dict[str, str]
    config: ExtractionSettings
    model: ArtifactRef
    pool: DatasetRef = Field(description="the attacker's unlabelled inputs (labels are not used)")
    eval_data: DatasetRef = Field(description="held-out data for fidelity and accuracy")
    eval_source: str = Field(description="where the held-out data came from")
    copy_model: str = Field(description="the architecture the copies were built with")
    victim_accuracy: float = Field(description="the victim's accuracy on the held-out data")
    runs: list[ExtractionRun]
    defenses: list[ExtractionDefenseRow]
    endpoint: dict[str, Any] | None = Field(default=None, description="the remote endpoint's settings and "
                                            "samples sent (API key redacted)")
    notes: list[str] = Field(default_factory=list)
    seconds: float
    atlas_ids: list[str] = Field(default_factory=lambda: list(EXTRACTION_ATLAS_IDS))
    owasp_ids: list[str] = Field(default_factory=lambda: list(EXTRACTION_OWASP_IDS))

    @property
    def best(self) -> ExtractionRun:
        """The run whose final copy agrees most with the victim."""
        return max(self.runs, key=lambda run: run.record.fidelity)
