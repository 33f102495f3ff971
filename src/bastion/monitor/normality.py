"""The Shapiro-Wilk W statistic, with its coefficients computed once per sample size.

The extraction monitor tests a key's last 1,000 distances every 10 queries; ``scipy.stats.shapiro`` spends
about 0.25 ms a call on that (most of it in its argument handling and in recomputing the coefficients),
which put a quarter of the monitor's cost on every tenth request. Only ``W`` is needed (the monitor compares
it with a threshold, not a p-value), and its coefficients depend on the sample size alone.

Coefficients: Royston's approximation (Royston, "Remark AS R94", Applied Statistics 44, 1995), the one
``scipy.stats.shapiro`` uses: ``m_i`` the expected normal order statistics ``Phi^-1((i - 3/8) / (n + 1/4))``,
the two outermost coefficients from polynomials in ``1/sqrt(n)``, the others ``m_i`` scaled so that the
squares sum to one. ``W = (sum a_i x_(i))^2 / sum (x_i - mean)^2``. Agrees with SciPy to about 1e-8 for n from
12 to 5,000 (normal, skewed, uniform, heavy-tailed and tied samples).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.special import ndtri

_LAST = (0.0, 0.221157, -0.147981, -2.071190, 4.434685, -2.706056)  # a_n - c_n as a polynomial in 1/sqrt(n)
_SECOND = (0.0, 0.042981, -0.293762, -1.752461, 5.682633, -3.582633)  # a_(n-1) - c_(n-1)

#: The smallest sample this module computes W for (smaller samples use other coefficient formulas).
MIN_SIZE = 12


@functools.lru_cache(maxsize=64)
def shapiro_coefficients(n: int) -> np.ndarray:
    """The ``(n,)`` Shapiro-Wilk coefficients for a sample of ``n`` >= :data:`MIN_SIZE`, ascending (antisymmetric,
    unit sum of squares). Read-only; cached for the last 64 sizes (8 KB each at n = 1,000): the monitor's
    window grows by ``check_every`` to ``max_history`` and its 3-sigma trimming varies the size a little.

    Raises:
        ValueError: ``n`` < :data:`MIN_SIZE`.
    """
    if n < MIN_SIZE:
        raise ValueError(f"the Shapiro-Wilk coefficients here need at least {MIN_SIZE} values, got {n}")
    m = ndtri((np.arange(1, n + 1) - 0.375) / (n + 0.25))
    squares = float(m @ m)
    c = m / np.sqrt(squares)
    u = 1.0 / np.sqrt(n)
    last = c[-1] + np.polynomial.polynomial.polyval(u, _LAST)
    second = c[-2] + np.polynomial.polynomial.polyval(u, _SECOND)
    phi = (squares - 2 * m[-1] ** 2 - 2 * m[-2] ** 2) / (1 - 2 * last**2 - 2 * second**2)
    a = m / np.sqrt(phi)
    a[-1], a[-2], a[0], a[1] = last, second, -last, -second
    a.setflags(write=False)
    return a


def shapiro_w(values: np.ndarray) -> float:
    """Shapiro-Wilk ``W`` of ``values`` ``(n,)``, n >= :data:`MIN_SIZE`: near 1 for a normal sample, lower the
    further the sample is from normal. 1.0 when all values are equal.

    Raises:
        ValueError: fewer than :data:`MIN_SIZE` values, or a non-finite one.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if not np.isfinite(x).all():
        raise ValueError("Shapiro-Wilk W needs finite values")
    a = shapiro_coefficients(len(x))
    spread = x - x.mean()
    total = float(spread @ spread)
    if total == 0.0:
        return 1.0
    return min(float(a @ x) ** 2 / total, 1.0)
