"""Queueing formulas of the serving model (docs/architecture.md, "Formulas"): the M/D/1 waiting time
(Crommelin's exact sum and its Cramér–Lundberg tail), its G/G/1 scaling for bursty arrivals (Kingman), and the
M/G/∞ batch percentile."""

from __future__ import annotations

import math

from planner.core.roots import root


def md1_wait_cdf(t: float, rate: float, service_s: float) -> float:
    """P(W ≤ t) in an M/D/1 queue (Crommelin 1932), exact finite sum:
    P(W ≤ t) = (1 − ρ) Σ_{k=0}^{⌊t/S⌋} [λ(kS − t)]^k / k! · e^{−λ(kS − t)}.
    The sum alternates; in float64 it is accurate to ~1e-7 up to t ≈ 8S (terms ≤ e^{2ρt})."""
    rho = rate * service_s
    if rho >= 1 or t < 0:
        return 0.0
    total = 0.0
    for k in range(int(t // service_s) + 1):
        x = rate * (k * service_s - t)
        total += x ** k / math.factorial(k) * math.exp(-x)
    return min(1.0, (1 - rho) * total)


def md1_tail_decay(rho: float) -> tuple[float, float]:
    """Cramér–Lundberg tail of the M/D/1 wait (S = 1): P(W > t) ≈ C·e^{−θt} with ρ(e^θ − 1) = θ and
    C = (1 − ρ)/(ρ·e^θ − 1). It matches Crommelin's sum to 4 digits once t ≳ S."""
    theta = 2 * (1 - rho) / rho  # heavy-traffic start; Newton on f(θ) = ρ(e^θ − 1) − θ
    for _ in range(50):
        f = rho * math.expm1(theta) - theta
        step = f / (rho * math.exp(theta) - 1)
        theta -= step
        if abs(step) < 1e-12 * theta:
            break
    return (1 - rho) / (rho * math.exp(theta) - 1), theta


def md1_wait_percentile(p: float, rate: float, service_s: float) -> float:
    """The p-quantile of the M/D/1 waiting time: the exponential tail where it lies beyond 4S (exact there),
    otherwise the root of Crommelin's sum − p within [0, 4S]."""
    rho = rate * service_s
    if rho >= 1:
        return math.inf
    if 1 - rho >= p or rho <= 0:  # P(W = 0) = 1 − ρ
        return 0.0
    c, theta = md1_tail_decay(rho)
    t_tail = math.log(c / (1 - p)) / theta
    if t_tail >= 4:
        return t_tail * service_s
    return root(lambda t: md1_wait_cdf(t, rho, 1.0) - p, 0.0, 4.0) * service_s


def batch_at_percentile(mean_batch: float, z: float, ca2: float = 1.0) -> float:
    """Concurrency in an M/G/∞ system is Poisson(mean): its p-quantile ≈ mean + z·sqrt(mean). With renewal
    arrivals of squared inter-arrival CV c_a² (bursty traffic) and lives long against the mean gap, the count
    in a window has variance ≈ c_a²·mean (the index of dispersion of a renewal process):
    mean + z·sqrt(c_a²·mean)."""
    return mean_batch + max(z, 0.0) * math.sqrt(max(mean_batch, 0.0) * ca2)


def gg1_wait_percentile(p: float, rate: float, service_s: float, ca2: float = 1.0) -> float:
    """The p-quantile of the waiting time with deterministic service and renewal arrivals of squared CV c_a²
    (docs/levers/bursty.md): Kingman's G/G/1 approximation scales the mean wait of M/D/1 by
    (c_a² + c_s²)/(1 + c_s²) = c_a² (c_s = 0), and in heavy traffic the whole wait distribution scales with its
    mean (the diffusion limit), so W_p ≈ c_a² · W_p(M/D/1, Crommelin). c_a² = 1 is M/D/1 exactly."""
    w = md1_wait_percentile(p, rate, service_s)
    return w if ca2 == 1.0 else w * ca2
