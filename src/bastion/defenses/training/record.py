"""What a training run leaves behind: the settings it ran with and what happened, epoch by epoch."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

OptimizerName = Literal["sgd", "adam"]
#: Learning-rate schedules, as a factor of the base rate over the fraction of training done.
ScheduleName = Literal["constant", "cosine", "piecewise", "one-cycle"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OptimiserSettings(_Record):
    """How the weights were updated (see :func:`bastion.defenses.training.fit`)."""

    optimizer: OptimizerName
    lr: float = Field(description="base (peak) learning rate")
    momentum: float = Field(description="SGD momentum; unused by Adam")
    weight_decay: float
    schedule: ScheduleName
    batch_size: int


class EarlyStopSettings(_Record):
    """The validation attack that picks the best epoch (see :class:`~bastion.defenses.training.EarlyStop`)."""

    threat: dict[str, Any]
    patience: int
    attack_steps: int
    points: int


class EpochRecord(_Record):
    """One epoch.

    ``val_clean`` is the clean accuracy on the whole validation set, ``val_robust`` the accuracy
    under the early-stop PGD attack on its first ``points`` samples; both ``None`` when not measured.
    """

    epoch: int = Field(description="1-based")
    loss: float = Field(description="mean training loss over the epoch's batches")
    lr: float = Field(description="learning rate of the epoch's last step")
    seconds: float = Field(description="training plus validation time of this epoch")
    val_clean: float | None = None
    val_robust: float | None = None


class TrainingRecord(_Record):
    """The evidence of one training run.

    ``epochs`` counts the epochs actually run (fewer than ``epochs_planned`` after an early stop);
    ``best_epoch`` is the epoch whose weights the model holds at the end when early stopping was on
    (``None`` otherwise: the model holds the last epoch's weights). ``seconds`` sums the epochs'
    times across every session of a resumed run.
    """

    kind: Literal["training"] = "training"
    schema_version: int = 1
    method: str
    params: dict[str, Any]
    optimiser: OptimiserSettings
    seed: int
    epochs_planned: int
    epochs: int
    history: list[EpochRecord]
    best_epoch: int | None = None
    early_stop: EarlyStopSettings | None = None
    stopped_early: bool = False
    resumed_from: int | None = Field(default=None, description="epoch of the checkpoint this run resumed from")
    seconds: float
    train_samples: int
    validation_samples: int | None = None
    train_accuracy: float = Field(description="clean accuracy on the training data with the final weights")
    teacher: TrainingRecord | None = Field(default=None, description="distillation: the teacher's training run")
    weight_average: float | None = Field(default=None, description="decay of the weights' moving average the model "
                                         "holds (validated and kept instead of the trained weights); None: none")

    @property
    def losses(self) -> list[float]:
        """Mean training loss per epoch run."""
        return [epoch.loss for epoch in self.history]
