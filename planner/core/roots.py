"""One-dimensional solving for the formulas that invert a monotone model (docs/architecture.md, "Formulas"):
a continuous function's root by Brent's method (scipy.optimize.brentq), and the largest load a monotone
yes/no test (an SLO met) accepts, by bisection."""

from __future__ import annotations

from typing import Callable

BISECTION_STEPS = 16  # largest_true's resolution, 2^-16 of the bracket: far below the model's own error


def root(f: Callable[[float], float], lo: float, hi: float) -> float:
    """x in [lo, hi] with f(x) = 0 for an increasing f (Brent's method); the end nearer the crossing when f
    keeps one sign on [lo, hi] (lo when f(lo) ≥ 0, hi when f(hi) ≤ 0)."""
    from scipy.optimize import brentq

    if f(lo) >= 0:
        return lo
    if f(hi) <= 0:
        return hi
    return float(brentq(f, lo, hi, xtol=1e-12 * max(abs(lo), abs(hi), 1.0), rtol=1e-12))


def largest_true(ok: Callable[[float], bool], hi: float, steps: int = BISECTION_STEPS) -> float:
    """Largest x in (0, hi] with ok(x), for a test that holds below a threshold and fails above it: hi if
    ok(hi), else bisection on (0, hi) to hi·2^-steps, returning the last x that passed (0 if none did)."""
    if ok(hi):
        return hi
    lo = 0.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo
