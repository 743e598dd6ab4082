"""One-dimensional solving for the formulas that invert a monotone model (docs/architecture.md, "Formulas"):
an increasing function's root, and the largest load a monotone yes/no test (an SLO met) accepts, both by
bisection. (Not scipy's brentq: importing scipy.optimize costs ~0.7 s and ~40 MB on every `planner optimize`,
more than all the bisections of a search; the functions here are monotone, so bisection always converges.)"""

from __future__ import annotations

from typing import Callable

BISECTION_STEPS = 16  # largest_true's resolution, 2^-16 of the bracket: far below the model's own error


def root(f: Callable[[float], float], lo: float, hi: float) -> float:
    """x in [lo, hi] with f(x) = 0 for an increasing f, to 1e-12 of the bracket's scale (the upper end of the
    last bracket); the end nearer the crossing when f keeps one sign on [lo, hi] (lo when f(lo) ≥ 0, hi when
    f(hi) ≤ 0)."""
    if f(lo) >= 0:
        return lo
    if f(hi) <= 0:
        return hi
    tol = 1e-12 * max(abs(lo), abs(hi), 1.0)
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return hi


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
