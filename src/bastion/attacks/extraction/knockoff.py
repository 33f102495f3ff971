"""Knockoff Nets: steal a classifier by querying it on the attacker's own unlabelled inputs.

Paper: Orekondy, Schiele, Fritz, "Knockoff Nets: Stealing Functionality of Black-Box Models", CVPR 2019.
The attacker holds a pool of natural inputs (the transfer-set source, not the victim's training
data), sends up to ``budget`` of them to the victim, and trains a copy on the answers.

Strategies:
    - ``"random"`` (default): pool inputs drawn uniformly without replacement.
    - ``"adaptive"``: a gradient bandit over coarse groups of the pool learns which groups give
      useful answers (see :mod:`bastion.attacks.extraction.bandit` for the groups and rewards).
      Queries go in rounds of ``round_size``; after each round an online copy is trained one more
      epoch on everything queried so far, for the ``loss`` reward.

Both query each pool input at most once, so at most ``min(budget, N)`` queries are used.
Defaults: copies trained as :class:`CopyTraining` says (Adam, lr 1e-3) on the victim's probabilities
(``output="auto"``); adaptive: 10 k-means groups, reward ``"all"``, bandit step 0.1, rounds of 20.
Shapes: pool ``(N, *input_shape)`` and x_eval ``(M, *input_shape)`` in the victim's bounds,
y_eval ``(M,)``; numpy or torch.

Example:
    >>> attack = KnockoffNets(digits_cnn, strategy="adaptive")
    >>> result = attack.extract(victim, pool, budget=1000, x_eval=x_test, y_eval=y_test, seed=0)
    >>> [(p.queries, p.fidelity) for p in result.curve]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from bastion.attacks.extraction.bandit import DIVERSITY_WINDOW, REWARDS, GradientBandit, pool_groups, rewards
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
from bastion.attacks.extraction.substitute import CopyTraining, ModelFactory, SoftTargets, new_copy
from bastion.core.errors import InputError
from bastion.core.seeding import derive_seed
from bastion.defenses.training.loop import fit
from bastion.models.base import Classifier

Strategy = Literal["random", "adaptive"]
STRATEGIES: tuple[str, ...] = ("random", "adaptive")


class KnockoffNets:
    """Query the victim on pool inputs chosen by ``strategy`` and train a copy built by ``copy_factory``.

    Args:
        copy_factory: ``() -> nn.Module`` building an untrained copy for the victim's inputs and classes.
        strategy: ``"random"`` (default) or ``"adaptive"``.
        output: ``"auto"`` (default), ``"probabilities"`` or ``"labels"`` (see :mod:`.base`).
        training: how each copy is trained; default :class:`CopyTraining` (30 epochs and at least 1000
            steps of Adam at 1e-3, batches of 32).
        num_groups: k-means groups of the pool for ``"adaptive"`` when no ``groups`` are given (10).
        reward: ``"all"`` (default), ``"certainty"``, ``"diversity"`` or ``"loss"`` (adaptive only).
        bandit_lr: the bandit's step size (0.1). round_size: queries per adaptive round (20).
    """

    name = "knockoff"

    def __init__(
        self,
        copy_factory: ModelFactory,
        *,
        strategy: Strategy = "random",
        output: OutputKind = "auto",
        training: CopyTraining | None = None,
        num_groups: int = 10,
        reward: str = "all",
        bandit_lr: float = 0.1,
        round_size: int = 20,
    ) -> None:
        if not callable(copy_factory):
            raise InputError(f"copy_factory must be a callable returning an nn.Module, got {copy_factory!r}")
        if strategy not in STRATEGIES:
            raise InputError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if reward not in REWARDS:
            raise InputError(f"unknown reward {reward!r}; choose one of {', '.join(REWARDS)}")
        if isinstance(bandit_lr, bool) or not isinstance(bandit_lr, int | float) or not 0 < bandit_lr < np.inf:
            raise InputError(f"bandit_lr must be a finite number > 0, got {bandit_lr!r}")
        self.copy_factory = copy_factory
        self.strategy: Strategy = strategy
        self.output = check_output(output)
        self.training = CopyTraining() if training is None else training
        if not isinstance(self.training, CopyTraining):
            raise InputError(f"training must be a CopyTraining, got {type(training).__name__}")
        self.num_groups = check_positive_int(num_groups, "num_groups")
        self.reward = reward
        self.bandit_lr = float(bandit_lr)
        self.round_size = check_positive_int(round_size, "round_size")

    def get_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"strategy": self.strategy, "output": self.output,
                                  "copy_factory": getattr(self.copy_factory, "__name__", repr(self.copy_factory))}
        if self.strategy == "adaptive":
            params |= {"num_groups": self.num_groups, "reward": self.reward, "bandit_lr": self.bandit_lr,
                       "round_size": self.round_size}
        return params

    def extract(
        self,
        victim: Classifier,
        pool: ArrayLike,
        *,
        budget: int,
        x_eval: ArrayLike,
        y_eval: ArrayLike | None = None,
        reference: Classifier | None = None,
        checkpoints: Sequence[int] | None = None,
        groups: ArrayLike | None = None,
        seed: int = 0,
    ) -> ExtractionResult:
        """Steal ``victim`` with at most ``budget`` queries on ``pool`` inputs.

        Args:
            victim: the model under attack (any access level).
            pool: ``(N, *input_shape)`` unlabelled attacker inputs in the victim's bounds.
            budget: the most victim queries (>= 1); at most ``N`` are used.
            x_eval: ``(M, *input_shape)`` held-out inputs; y_eval: ``(M,)`` their labels, optional.
            reference: the model fidelity is measured against; default ``victim`` (pass the model
                behind a defense, or an uncounted view of the victim).
            checkpoints: query counts for the curve; default 250, 500, 1000, ... and the budget.
            groups: ``(N,)`` coarse labels of the pool for ``"adaptive"``; default k-means clusters.
            seed: seeds the query order, the bandit, the clustering and every copy.

        Raises:
            InputError: a bad budget, shapes, bounds, checkpoints or groups.
        """
        victim = check_victim(victim)
        budget = check_positive_int(budget, "budget")
        points = check_checkpoints(checkpoints, budget)
        inputs = check_inputs(pool, victim, "pool")
        evaluation = Evaluation.build(victim, x_eval, y_eval, reference)
        oracle = BudgetedOracle(victim, budget, resolve_targets(self.output, victim))
        rng = np.random.default_rng(derive_seed(seed, self.name, "queries"))
        if self.strategy == "random":
            order = rng.permutation(len(inputs))[: min(budget, len(inputs))]
            queried = inputs[torch.from_numpy(order)]
            answers = oracle.query(queried)
            run_info: dict[str, Any] = {}
        else:
            group_of = pool_groups(inputs, groups, self.num_groups, derive_seed(seed, self.name, "groups"))
            queried, answers, run_info = self._adaptive(victim, oracle, inputs, group_of, rng, seed)
        return extraction_result(
            attack=self.name, factory=self.copy_factory, victim=victim, oracle=oracle, output=self.output,
            queried=queried, answers=answers, checkpoints=points, evaluation=evaluation, training=self.training,
            seed=seed, params={**self.get_params(), "pool_size": len(inputs), **run_info},
        )

    __call__ = extract

    def _adaptive(
        self,
        victim: Classifier,
        oracle: BudgetedOracle,
        pool: torch.Tensor,
        group_of: np.ndarray,
        rng: np.random.Generator,
        seed: int,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Rounds of bandit-chosen queries; returns the queried inputs, their answers and the bandit's state."""
        arms = int(group_of.max()) + 1
        queues = [rng.permutation(np.flatnonzero(group_of == arm)) for arm in range(arms)]
        taken = np.zeros(arms, dtype=np.int64)
        bandit = GradientBandit(arms, self.bandit_lr)
        online = new_copy(self.copy_factory, victim, derive_seed(seed, self.name, "online"))
        queried: list[torch.Tensor] = []
        answered: list[torch.Tensor] = []
        round_number = 0
        while oracle.remaining > 0 and bandit.open.any():
            chosen, picks = [], []
            for _ in range(min(self.round_size, oracle.remaining)):
                if not bandit.open.any():
                    break
                arm = bandit.choose(rng)
                picks.append(int(queues[arm][taken[arm]]))
                chosen.append(arm)
                taken[arm] += 1
                if taken[arm] == len(queues[arm]):
                    bandit.close(arm)
            x = pool[torch.tensor(picks)]
            answers = oracle.query(x)
            with torch.no_grad():
                copy_probabilities = torch.softmax(online.logits(x), dim=1)
            recent = torch.cat(answered)[-DIVERSITY_WINDOW:] if answered else answers[:0]
            for arm, reward in zip(chosen, rewards(self.reward, answers, copy_probabilities, recent), strict=True):
                bandit.update(arm, float(reward))
            queried.append(x)
            answered.append(answers)
            seen_x, seen_answers = torch.cat(queried), torch.cat(answered)
            fit(online, seen_x, seen_answers.argmax(dim=1), SoftTargets(seen_answers), epochs=1,
                batch_size=self.training.batch_size, optimizer="adam", lr=self.training.lr,
                seed=derive_seed(seed, self.name, "online", round_number))
            round_number += 1
        info = {"groups": arms, "group_sizes": [len(queue) for queue in queues], "pulls": bandit.pulls.tolist(),
                "final_policy": [round(float(p), 4) for p in bandit.policy()] if bandit.open.any() else None}
        return torch.cat(queried), torch.cat(answered), info
