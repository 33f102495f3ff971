"""Square Attack — score-based random search with square-shaped updates.

Paper: Andriushchenko, Croce, Flammarion, Hein, "Square Attack: a query-efficient black-box
adversarial attack via random search", ECCV 2020.
Norms: linf (windows set to +-eps per channel, vertical-stripe start) and l2 (a grid of
pseudo-Gaussian "meta" blocks to start; each step moves the perturbation mass of a second window
into the first and adds a new meta block there). Access: scores (``model.logits`` under
``torch.no_grad``; never gradients). Loss: margin on the scores, true logit minus best other
(targeted: best other minus target logit); a candidate is kept when it lowers the loss.
Defaults: ``queries=5000`` per sample (the starting point counts as one), ``p_init=0.8``,
halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of 10000 iterations (the
paper's schedule, rescaled to the budget).
Early stop: a sample leaves the active set once it reaches the goal; only unbroken samples are
queried. Vectorised over samples: windows are placed per sample by index arithmetic and masks.
Shapes: x ``(N, C, H, W)`` or ``(N, H, W)`` in the model's bounds, y ``(N,)`` int64.

Example:
    >>> threat = ThreatModel(norm="linf", eps=8 / 255, access="scores")
    >>> result = Square(queries=1000)(model, x, y, threat, seed=0)
"""

from __future__ import annotations

import math

import torch

from bastion.attacks import losses
from bastion.attacks.base import ATTACKS, EvasionAttack, goal_reached
from bastion.attacks.norms import distance
from bastion.core.errors import InputError
from bastion.core.records import AttackResult
from bastion.core.seeding import keyed_uniform
from bastion.core.threat import ThreatModel
from bastion.models.base import Classifier

_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_REDRAWS = 3  # linf: sign draws tried per step so that the window changes


def p_schedule(p_init: float, iteration: int, iterations: int) -> float:
    """Fraction of pixels a window covers at ``iteration`` (0-based) of ``iterations``."""
    scaled = int(iteration / max(iterations, 1) * 10000)
    return p_init / 2 ** sum(scaled > b for b in _HALVINGS)


def _bump(rows: int, cols: int) -> torch.Tensor:
    """``(rows, cols)`` centre-heavy block: nested concentric rectangles of weight 1/(k+1)^2."""
    levels = max(rows // 2, cols // 2) + 1
    weights = 1.0 / torch.arange(1, levels + 1, dtype=torch.float64) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[n] = sum_{k >= n} 1/(k+1)^2
    ring = torch.maximum((torch.arange(rows) - rows // 2).abs()[:, None],
                         (torch.arange(cols) - cols // 2).abs()[None, :])
    block = tail[ring]
    return block / block.norm().clamp_min(1e-12)


def meta_block(s: int) -> torch.Tensor:
    """``(s, s)`` unit-l2 "meta" pseudo-Gaussian block: a bump on top, a negated bump below."""
    block = torch.cat([_bump(s // 2, s), -_bump(s - s // 2, s)])
    return block / block.norm()


def _draws(keys: torch.Tensor, seed: int, stream: int, count: int,
           like: torch.Tensor) -> torch.Tensor:
    """``(N, count)`` keyed uniforms in [0, 1): all of a step's random numbers in one draw."""
    return keyed_uniform(keys, seed, stream, (count,), dtype=torch.float64).to(like.device)


def _as_signs(u: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Uniforms to +-1 in the dtype of ``like``."""
    return torch.where(u < 0.5, -1.0, 1.0).to(like.dtype)


def _as_index(u: torch.Tensor, high: int) -> torch.Tensor:
    """Uniforms to integers in ``[0, high)``."""
    return (u * high).floor().clamp(0, high - 1).to(torch.int64)


def _window(rows: torch.Tensor, cols: torch.Tensor, s: int, height: int,
            width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(N, 1, H, W)`` mask of the ``s x s`` windows at per-sample corners, and the row and
    column offsets ``(N, H)``, ``(N, W)`` of every pixel inside its sample's window."""
    r = torch.arange(height, device=rows.device)[None, :] - rows[:, None]
    c = torch.arange(width, device=cols.device)[None, :] - cols[:, None]
    inside = ((r >= 0) & (r < s))[:, :, None] & ((c >= 0) & (c < s))[:, None, :]
    return inside.unsqueeze(1), r.clamp(0, s - 1), c.clamp(0, s - 1)


def _place(blocks: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
           height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Put ``blocks`` ``(N, s, s)`` at per-sample corners: ``(N, 1, H, W)`` image and mask."""
    mask, r, c = _window(rows, cols, blocks.shape[1], height, width)
    batch = torch.arange(len(blocks), device=blocks.device)[:, None, None]
    return blocks[batch, r[:, :, None], c[:, None, :]].unsqueeze(1) * mask, mask


def _l2_norm(t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return t.pow(2).sum(dims, keepdim=True).sqrt()


@ATTACKS.register("square")
class Square(EvasionAttack):
    name = "square"
    access = "scores"

    def __init__(self, queries: int = 5000, p_init: float = 0.8) -> None:
        if queries < 1:
            raise InputError("queries must be >= 1")
        if not 0 < p_init <= 1:
            raise InputError(f"p_init must be in (0, 1], got {p_init}")
        self.queries = queries
        self.p_init = p_init

    def supports(self, model: Classifier, threat: ThreatModel) -> str | None:
        if len(model.input_shape) not in (2, 3):
            return (f"square needs image inputs shaped (C, H, W) or (H, W) per sample; this model takes "
                    f"{tuple(model.input_shape)} (use hopskipjump, or a gradient attack if the model has gradients)")
        return super().supports(model, threat)

    def perturb(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        seed: int,
        keys: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> AttackResult:
        if x.ndim not in (3, 4):
            raise InputError(
                f"Square Attack needs image inputs shaped (C, H, W) or (H, W) per sample; "
                f"got {tuple(x.shape[1:])}"
            )
        images = x.reshape(len(x), -1, *x.shape[-2:])
        queries = torch.zeros(len(x), dtype=torch.int64)
        goal = y if targets is None else targets
        init = self._linf_start if threat.norm == "linf" else self._l2_start
        best = (images + init(images, keys, seed, threat.eps)).clamp(*threat.bounds)
        loss, won = self._score(model, best, x.shape, y, goal, targets is not None)
        queries += 1
        # Compact active set: tensors below hold only the samples still unbroken.
        act = (~won).nonzero().squeeze(1)
        xa, ba, la, ya, ga, ka = images[act], best[act], loss[act], y[act], goal[act], keys[act]
        step = self._linf_step if threat.norm == "linf" else self._l2_step
        for it in range(self.queries - 1):
            if not len(act):
                break
            p = p_schedule(self.p_init, it, self.queries)
            cand = step(xa, ba, ka, seed, it + 1, p, threat)  # one keyed draw per step
            new_loss, reached = self._score(model, cand, x.shape, ya, ga, targets is not None)
            queries[act.cpu()] += 1
            better = (new_loss < la) | reached
            ba = torch.where(better[:, None, None, None], cand, ba)
            la = torch.where(better, new_loss, la)
            if bool(reached.any()):
                best[act[reached]], won[act[reached]] = ba[reached], True
                keep = ~reached
                act, xa, ba, la, ya, ga, ka = (t[keep] for t in (act, xa, ba, la, ya, ga, ka))
        best[act] = ba
        x_adv = best.reshape(x.shape)
        return AttackResult(x_adv, won.cpu(), distance(x_adv - x, threat.norm), queries)

    @staticmethod
    def _score(model: Classifier, images: torch.Tensor, shape: torch.Size, y: torch.Tensor,
               goal: torch.Tensor, targeted: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Margin loss ``(N,)`` (lower is better, negative: reached) and goal reached ``(N,)``."""
        with torch.no_grad():
            logits = model.logits(images.reshape(len(images), *shape[1:]))
        if targeted:
            return losses.margin(logits, goal), goal_reached(logits.argmax(1), y, goal)
        return -losses.margin(logits, y), goal_reached(logits.argmax(1), y, None)

    def _linf_start(self, x: torch.Tensor, keys: torch.Tensor, seed: int,
                    eps: float) -> torch.Tensor:
        """Vertical stripes: one random sign per (channel, column), ``(N, C, 1, W)``."""
        n, channels, _, width = x.shape
        u = _draws(keys, seed, 0, channels * width, x)
        return eps * _as_signs(u, x).reshape(n, channels, 1, width)

    def _l2_start(self, x: torch.Tensor, keys: torch.Tensor, seed: int,
                  eps: float) -> torch.Tensor:
        """Grid of meta blocks of side ``H // 5`` with random sign and orientation, norm eps."""
        n, channels, height, width = x.shape
        t = max(min(height, width) // 5, 1)
        gh, gw = height // t, width // t
        u = _draws(keys, seed, 0, (1 + channels) * gh * gw, x)
        turn = (u[:, : gh * gw] < 0.5).reshape(n, 1, gh, gw, 1, 1)
        block = meta_block(t).to(x.device, x.dtype)
        tiles = torch.where(turn, block.T, block)  # (N, 1, gh, gw, t, t)
        tiles = tiles * _as_signs(u[:, gh * gw :], x).reshape(n, channels, gh, gw, 1, 1)
        grid = tiles.permute(0, 1, 2, 4, 3, 5).reshape(n, channels, gh * t, gw * t)
        delta = torch.zeros_like(x)
        top, left = (height - gh * t) // 2, (width - gw * t) // 2
        delta[:, :, top : top + gh * t, left : left + gw * t] = grid
        return delta * (eps / _l2_norm(delta, (1, 2, 3)).clamp_min(1e-12))

    def _linf_step(self, x: torch.Tensor, best: torch.Tensor, keys: torch.Tensor, seed: int,
                   stream: int, p: float, threat: ThreatModel) -> torch.Tensor:
        """Set one ``s x s`` window per sample to ``x +- eps`` (a random sign per channel)."""
        n, channels, height, width = x.shape
        s = min(max(round(math.sqrt(p * height * width)), 1), max(min(height, width) - 1, 1))
        u = _draws(keys, seed, stream, 2 + _REDRAWS * channels, x)
        mask = _window(_as_index(u[:, 0], height - s + 1), _as_index(u[:, 1], width - s + 1),
                       s, height, width)[0]
        signs = _as_signs(u[:, 2:], x).reshape(n, _REDRAWS, channels, 1, 1)
        window = (x + threat.eps * signs[:, 0]).clamp(*threat.bounds)
        cand = torch.where(mask, window, best)
        # As in the paper, redraw the signs where the window would not change (a few times).
        for attempt in range(1, _REDRAWS):
            same = ((cand - best).abs().flatten(1).amax(1) < 1e-7).nonzero().squeeze(1)
            if not len(same):
                break
            window = (x[same] + threat.eps * signs[same, attempt]).clamp(*threat.bounds)
            cand[same] = torch.where(mask[same], window, best[same])
        return cand

    def _l2_step(self, x: torch.Tensor, best: torch.Tensor, keys: torch.Tensor, seed: int,
                 stream: int, p: float, threat: ThreatModel) -> torch.Tensor:
        """Move window 2's mass into window 1, adding a fresh meta block; the norm stays eps."""
        _, channels, height, width = x.shape
        s = max(round(math.sqrt(p * height * width)), 3)
        s = min(s + 1 - s % 2, min(height, width))
        delta = best - x
        u = _draws(keys, seed, stream, 5 + channels, x)
        r1, r2 = _as_index(u[:, 0], height - s + 1), _as_index(u[:, 2], height - s + 1)
        c1, c2 = _as_index(u[:, 1], width - s + 1), _as_index(u[:, 3], width - s + 1)
        block = meta_block(s).to(x.device, x.dtype)
        blocks = torch.where((u[:, 4] < 0.5)[:, None, None], block.T, block)
        eta, m1 = _place(blocks, r1, c1, height, width)
        m2 = _window(r2, c2, s, height, width)[0]
        rho = _as_signs(u[:, 5:], x)[:, :, None, None]
        old = delta * m1
        unused = (threat.eps**2 - _l2_norm(delta, (1, 2, 3)) ** 2).clamp_min(0)
        available = (_l2_norm(delta * (m1 | m2), (2, 3)) ** 2 + unused / channels).sqrt()
        fresh = rho * eta + old / (_l2_norm(old, (2, 3)) + 1e-10)
        fresh = fresh / _l2_norm(fresh, (2, 3)).clamp_min(1e-12) * available
        delta = torch.where(m1, fresh, torch.where(m2, torch.zeros_like(delta), delta))
        delta = delta * (threat.eps / _l2_norm(delta, (1, 2, 3)).clamp_min(1e-12))
        return (x + delta).clamp(*threat.bounds)
