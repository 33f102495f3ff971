"""The adaptive query policy of Knockoff Nets: a gradient bandit over coarse groups of the attacker's pool.

Paper: Orekondy, Schiele, Fritz, "Knockoff Nets: Stealing Functionality of Black-Box Models", CVPR
2019, section 4.1.2. The actions are groups of pool inputs; each step draws a group from a softmax
over learned preferences, queries one unused input of it, and rewards the group by how useful the
answer was. Preferences follow the gradient bandit of Sutton & Barto (2018, section 2.8).

Our choices, where the paper leaves room:

- Groups: the pool's own coarse labels when the attacker has them (the paper uses the pool's label
  hierarchy), otherwise k-means clusters of the flattened pool inputs (no victim queries needed).
- Rewards, each in [0, 1] so they can be averaged without rescaling:
  ``certainty`` the victim's top-1 minus top-2 probability (constant 1 for one-hot answers, so
  uninformative against a label-only victim); ``diversity`` the paper's
  ``sum_c max(0, y_c - mean of the last DIVERSITY_WINDOW answers_c)``, which rewards classes not
  seen lately; ``loss`` ``1 - exp(-cross_entropy(victim answer, online copy))``, i.e. one minus the
  probability the online copy gives the victim's answer (for one-hot answers): high where the copy
  is still wrong. ``"all"`` (the default) is the mean of the three, as in the paper's combined reward.
- The baseline is the mean of all earlier rewards; the step size ``lr`` defaults to 0.1.
"""

from __future__ import annotations

import numpy as np
import torch

from bastion.attacks.extraction.base import ArrayLike, check_positive_int
from bastion.core.errors import InputError

REWARDS: tuple[str, ...] = ("all", "certainty", "diversity", "loss")
#: Answers averaged for the diversity reward (the paper's window of recent outputs).
DIVERSITY_WINDOW = 25


def pool_groups(pool: torch.Tensor, groups: ArrayLike | None, num_groups: int, seed: int) -> np.ndarray:
    """Group index ``(N,)`` int64 in ``0..K-1`` of every pool input ``(N, *input_shape)``.

    ``groups`` (``(N,)`` integers, any values) is taken as given and renumbered; ``None`` clusters the
    flattened pool into ``min(num_groups, N)`` groups by k-means (seeded, 3 restarts).
    """
    if groups is not None:
        values = groups.detach().cpu().numpy() if isinstance(groups, torch.Tensor) else np.asarray(groups)
        if values.shape != (len(pool),) or not np.issubdtype(values.dtype, np.integer):
            raise InputError(f"groups must be {len(pool)} integers of shape ({len(pool)},), one per pool input, "
                             f"got {values.dtype} {values.shape}")
        return np.unique(values, return_inverse=True)[1].astype(np.int64).reshape(-1)
    from sklearn.cluster import KMeans

    clusters = min(check_positive_int(num_groups, "num_groups"), len(pool))
    rows = pool.reshape(len(pool), -1).numpy().astype(np.float64)
    labels = KMeans(n_clusters=clusters, n_init=3, random_state=seed % (2**32)).fit_predict(rows)
    return np.unique(labels, return_inverse=True)[1].astype(np.int64).reshape(-1)


class GradientBandit:
    """Softmax preferences over ``arms`` actions, updated by ``H_a += lr * (r - baseline) * (1[a] - pi)``.

    Arms can be closed (their group has no unused input left); a closed arm is never drawn.
    """

    def __init__(self, arms: int, lr: float) -> None:
        self.preferences = np.zeros(arms)
        self.open = np.ones(arms, dtype=bool)
        self.lr = float(lr)
        self.baseline = 0.0
        self.pulls = np.zeros(arms, dtype=np.int64)

    def policy(self) -> np.ndarray:
        """Probabilities ``(arms,)`` of drawing each arm; zero for closed arms."""
        if not self.open.any():
            raise InputError("every group of the pool is used up")
        scores = np.where(self.open, self.preferences, -np.inf)
        weights = np.exp(scores - scores[self.open].max())
        return weights / weights.sum()

    def choose(self, rng: np.random.Generator) -> int:
        return int(rng.choice(len(self.preferences), p=self.policy()))

    def close(self, arm: int) -> None:
        self.open[arm] = False

    def update(self, arm: int, reward: float) -> None:
        """One gradient-bandit step for ``arm``'s ``reward``; the baseline then absorbs the reward."""
        advantage = reward - self.baseline
        if self.open.any():
            policy = self.policy()
            self.preferences -= self.lr * advantage * policy
            self.preferences[arm] += self.lr * advantage
        self.pulls[arm] += 1
        self.baseline += (reward - self.baseline) / int(self.pulls.sum())


def rewards(kind: str, answers: torch.Tensor, copy_probabilities: torch.Tensor, recent: torch.Tensor) -> np.ndarray:
    """Rewards ``(B,)`` in [0, 1] for answers ``(B, C)``, the online copy's probabilities ``(B, C)`` on the
    same inputs and the ``recent`` answers before them ``(R, C)`` (``R`` may be 0); see the module docstring.
    """
    top = answers.topk(2, dim=1).values
    certainty = top[:, 0] - top[:, 1]
    mean = recent.mean(dim=0) if len(recent) else torch.zeros(answers.shape[1])
    diversity = (answers - mean).clamp_min(0).sum(dim=1).clamp(0, 1)
    cross_entropy = -(answers * copy_probabilities.clamp_min(1e-12).log()).sum(dim=1)
    loss = 1.0 - torch.exp(-cross_entropy)
    signals = {"certainty": certainty, "diversity": diversity, "loss": loss}
    value = torch.stack(list(signals.values())).mean(dim=0) if kind == "all" else signals[kind]
    return value.double().numpy()
