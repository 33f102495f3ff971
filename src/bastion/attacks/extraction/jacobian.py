"""Jacobian-based dataset augmentation: grow a substitute's training set where its decision changes fastest.

Paper: Papernot, McDaniel, Goodfellow, Jha, Celik, Swami, "Practical Black-Box Attacks against
Machine Learning", ASIA CCS 2017 (section 4.2; the periodic step size of section 5).
Starting from a small seed set ``S_0`` labelled by the victim, each round ``rho``:

1. trains a substitute on ``S_rho`` and the victim's answers;
2. augments: ``x' = clip(x + lambda_rho * sign(d F_{O(x)}(x) / dx))`` for ``x`` in ``S_rho``, where
   ``F_{O(x)}`` is the substitute's logit for the victim's label ``O(x)`` (our choice: the logit, not
   the softmax output; only its sign is used) and ``lambda_rho = step * (-1) ** (rho // period)``;
3. queries the victim on the new points: ``S_{rho+1} = S_rho + {x'}`` (the set doubles).

Budget: the seed set costs ``min(seed_size, budget)`` queries; when a round would double the set
past the budget, only ``remaining`` points of ``S_rho``, drawn at random (seeded), are augmented (in
the spirit of the paper's reservoir sampling). Rounds stop at the budget or after ``max_rounds``.
The final copy is trained from scratch on every queried point, like every curve point.

Defaults: 100 seed points drawn from the attacker's seed data, ``step = 0.1``, ``period = 3``, no
round limit, targets ``output="auto"`` (the paper uses labels; pass ``output="labels"``), copies
trained as :class:`CopyTraining` says (Adam, lr 1e-3). Shapes as for :class:`KnockoffNets`.

Example:
    >>> attack = JacobianAugmentation(digits_cnn, output="labels")
    >>> result = attack.extract(victim, seed_data, budget=800, x_eval=x_test, y_eval=y_test)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from bastion.attacks.extraction.base import (
    ArrayLike,
    ExtractionResult,
    OutputKind,
    check_checkpoints,
    check_inputs,
    check_output,
    check_positive_int,
    check_victim,
    resolve_targets,
)
from bastion.attacks.extraction.curve import Evaluation, extraction_result
from bastion.attacks.extraction.oracle import BudgetedOracle
from bastion.attacks.extraction.substitute import CopyTraining, ModelFactory, train_copy
from bastion.core.errors import InputError
from bastion.core.seeding import derive_seed
from bastion.models.base import Classifier
from bastion.models.torch_adapter import TorchClassifier

#: Samples per substitute forward/backward pass when augmenting.
_GRADIENT_BATCH = 512


class JacobianAugmentation:
    """Papernot et al.'s substitute training with Jacobian-based augmentation, within a query budget.

    Args:
        copy_factory: ``() -> nn.Module`` building an untrained substitute.
        seed_size: initial points drawn from the seed data (100; fewer if the data or budget is smaller).
        step: ``lambda``, the augmentation step in input units (0.1).
        period: ``tau``, rounds between sign flips of the step (3).
        max_rounds: the most augmentation rounds; ``None`` (default) runs until the budget is spent.
        output: ``"auto"`` (default), ``"probabilities"`` or ``"labels"``.
        training: how each substitute is trained; default :class:`CopyTraining` (30 epochs and at
            least 1000 steps of Adam at 1e-3, batches of 32).
    """

    name = "jacobian"

    def __init__(
        self,
        copy_factory: ModelFactory,
        *,
        seed_size: int = 100,
        step: float = 0.1,
        period: int = 3,
        max_rounds: int | None = None,
        output: OutputKind = "auto",
        training: CopyTraining | None = None,
    ) -> None:
        if not callable(copy_factory):
            raise InputError(f"copy_factory must be a callable returning an nn.Module, got {copy_factory!r}")
        if isinstance(step, bool) or not isinstance(step, int | float) or not math.isfinite(step) or step <= 0:
            raise InputError(f"step must be a finite number > 0 (input units), got {step!r}")
        self.copy_factory = copy_factory
        self.seed_size = check_positive_int(seed_size, "seed_size")
        self.step = float(step)
        self.period = check_positive_int(period, "period")
        self.max_rounds = None if max_rounds is None else check_positive_int(max_rounds, "max_rounds")
        self.output = check_output(output)
        self.training = CopyTraining() if training is None else training
        if not isinstance(self.training, CopyTraining):
            raise InputError(f"training must be a CopyTraining, got {type(training).__name__}")

    def get_params(self) -> dict[str, Any]:
        return {"seed_size": self.seed_size, "step": self.step, "period": self.period,
                "max_rounds": self.max_rounds, "output": self.output,
                "copy_factory": getattr(self.copy_factory, "__name__", repr(self.copy_factory))}

    def extract(
        self,
        victim: Classifier,
        seed_data: ArrayLike,
        *,
        budget: int,
        x_eval: ArrayLike,
        y_eval: ArrayLike | None = None,
        reference: Classifier | None = None,
        checkpoints: Sequence[int] | None = None,
        seed: int = 0,
    ) -> ExtractionResult:
        """Train a substitute of ``victim`` with at most ``budget`` queries, starting from ``seed_data``.

        Args:
            victim: the model under attack (any access level).
            seed_data: ``(N, *input_shape)`` attacker inputs in the victim's bounds; ``seed_size`` of
                them (drawn with ``seed``) form the initial set.
            budget, x_eval, y_eval, reference, checkpoints, seed: as for :meth:`KnockoffNets.extract`.

        Raises:
            InputError: a bad budget, shapes, bounds or checkpoints.
        """
        victim = check_victim(victim)
        budget = check_positive_int(budget, "budget")
        points = check_checkpoints(checkpoints, budget)
        inputs = check_inputs(seed_data, victim, "seed_data")
        evaluation = Evaluation.build(victim, x_eval, y_eval, reference)
        oracle = BudgetedOracle(victim, budget, resolve_targets(self.output, victim))
        rng = np.random.default_rng(derive_seed(seed, self.name, "queries"))
        first = rng.permutation(len(inputs))[: min(self.seed_size, budget, len(inputs))]
        queried = inputs[torch.from_numpy(first)]
        answers = oracle.query(queried)
        rounds = 0
        while oracle.remaining > 0 and (self.max_rounds is None or rounds < self.max_rounds):
            substitute = train_copy(self.copy_factory, victim, queried, answers, self.training,
                                    seed=derive_seed(seed, self.name, "substitute", rounds))
            sources = np.arange(len(queried))
            if len(sources) > oracle.remaining:
                sources = np.sort(rng.choice(sources, size=oracle.remaining, replace=False))
            index = torch.from_numpy(sources)
            step = self.step * (-1) ** (rounds // self.period)
            new = self._augment(substitute, queried[index], answers[index].argmax(dim=1), step)
            queried = torch.cat([queried, new])
            answers = torch.cat([answers, oracle.query(new)])
            rounds += 1
        return extraction_result(
            attack=self.name, factory=self.copy_factory, victim=victim, oracle=oracle, output=self.output,
            queried=queried, answers=answers, checkpoints=points, evaluation=evaluation, training=self.training,
            seed=seed, params={**self.get_params(), "seed_points": len(first), "rounds": rounds},
        )

    __call__ = extract

    @staticmethod
    def _augment(substitute: TorchClassifier, x: torch.Tensor, labels: torch.Tensor, step: float) -> torch.Tensor:
        """``clip(x + step * sign(grad_x logit_label(x)))`` for ``x`` ``(B, *input_shape)``, labels ``(B,)``."""
        augmented = []
        for start in range(0, len(x), _GRADIENT_BATCH):
            batch = x[start : start + _GRADIENT_BATCH].clone().requires_grad_(True)
            chosen = substitute.logits(batch).gather(1, labels[start : start + _GRADIENT_BATCH, None])
            (gradient,) = torch.autograd.grad(chosen.sum(), batch)
            augmented.append((batch.detach() + step * gradient.sign()).clamp(*substitute.bounds))
        return torch.cat(augmented)
