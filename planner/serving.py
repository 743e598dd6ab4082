"""SLO-aware capacity of one instance per role and request class (DESIGN §4).

Goodput of an instance = the highest request rate at which the p-th percentile of TTFT and of TPOT both meet
the SLO (DistServe's definition). Three roles:
  prefill  (disaggregated): M/D/1 queue of prompts; TTFT_p = W_p + S + KV transfer.
  decode   (disaggregated): Little's law B = λ·osl·TPOT(B); the batch's p-th percentile must meet TPOT.
  collocated (chunked prefill, Sarathi): each iteration carries the decode batch plus the prompts' share of
           the chunk budget C; TTFT_p = W_p + ⌈isl / (C − B)⌉·T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, localcontext
from statistics import NormalDist

from planner.estimate import Setup
from planner.perf import comm
from planner.perf.step import StepShape

BISECTION_STEPS = 22  # relative resolution ~2^-22 of the bracket


@dataclass(frozen=True)
class Slo:
    ttft_ms: float
    tpot_ms: float
    percentile: float = 90.0

    @property
    def z(self) -> float:
        return NormalDist().inv_cdf(self.percentile / 100.0)


@dataclass(frozen=True)
class Capacity:
    """What one instance sustains for one request class in one role, and why not more."""
    rate_rps: float  # goodput: max req/s meeting both SLO percentiles (0: cannot meet them)
    ttft_ms: float  # predicted p-th percentile TTFT at that rate
    tpot_ms: float  # predicted p-th percentile TPOT at that rate
    batch: float  # mean concurrent decode sequences at that rate
    binding: str  # what stops a higher rate: ttft | tpot | kv_memory | chunk_budget | max_num_seqs | slo_floor


NONE = Capacity(0.0, math.inf, math.inf, 0.0, "slo_floor")


# ---- queueing ----------------------------------------------------------------------------------------------

def md1_wait_cdf(t: float, rate: float, service_s: float) -> float:
    """P(W ≤ t) in an M/D/1 queue (Crommelin 1932):
    P(W ≤ t) = (1 − ρ) Σ_{k=0}^{⌊t/S⌋} [λ(kS − t)]^k / k! · e^{−λ(kS − t)}.
    The alternating sum loses float precision for large λt, so it is summed in 80-digit decimals."""
    rho = rate * service_s
    if rho >= 1:
        return 0.0
    if t < 0:
        return 0.0
    with localcontext() as ctx:
        ctx.prec = 80
        lam, s, tt = Decimal(rate), Decimal(service_s), Decimal(t)
        total, fact = Decimal(0), Decimal(1)
        for k in range(int(t // service_s) + 1):
            x = lam * (k * s - tt)
            if k:
                fact *= k
            total += x ** k / fact * (-x).exp()
        return float(min(Decimal(1), (1 - Decimal(rho)) * total))


def md1_wait_percentile(p: float, rate: float, service_s: float) -> float:
    """The p-quantile of the M/D/1 waiting time (bisection on Crommelin's CDF)."""
    rho = rate * service_s
    if rho >= 1:
        return math.inf
    if md1_wait_cdf(0.0, rate, service_s) >= p:  # P(W = 0) = 1 − ρ
        return 0.0
    lo, hi = 0.0, service_s
    while md1_wait_cdf(hi, rate, service_s) < p:
        lo, hi = hi, hi * 2
        if hi > 200 * service_s:  # beyond any sane TTFT budget: treat as unbounded
            return math.inf
    for _ in range(30):
        mid = (lo + hi) / 2
        if md1_wait_cdf(mid, rate, service_s) < p:
            lo = mid
        else:
            hi = mid
    return hi


def _max_rate(feasible, hi: float) -> float:
    """Largest λ in (0, hi] with feasible(λ) (feasibility is monotone: more load never helps)."""
    if feasible(hi):
        return hi
    lo = 0.0
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        if feasible(mid):
            lo = mid
        else:
            hi = mid
    return lo


def batch_at_percentile(mean_batch: float, z: float) -> float:
    """Concurrency in an M/G/∞ system is Poisson(mean): its p-quantile ≈ mean + z·sqrt(mean)."""
    return mean_batch + max(z, 0.0) * math.sqrt(max(mean_batch, 0.0))


# ---- roles -------------------------------------------------------------------------------------------------

def prefill_service_s(setup: Setup, isl: float) -> tuple[float, float]:
    """(time to prefill one prompt alone, per-prompt service time when prompts are batched to the chunk)."""
    alone = setup.step(StepShape(prefill_tokens=isl, prefill_seq_len=isl)).time_s
    per_batch = max(1, int(setup.chunk // isl))
    batched = setup.step(StepShape(prefill_tokens=isl * per_batch, prefill_seq_len=isl)).time_s / per_batch
    return alone, min(alone, batched)


def kv_handoff_s(setup: Setup, isl: float, link_gbps: float | None = None) -> float:
    """KV of one prompt shipped from a prefill instance to a decode instance (each prefill GPU sends its shard)."""
    kv = setup.model.kv_bytes_per_sequence(isl, setup.kv_dtype)
    return comm.kv_transfer_s(kv, setup.gpu, same_node=False, link_gbps=link_gbps, gpus_sending=setup.par.gpus)


def prefill_capacity(setup: Setup, isl: float, slo: Slo, link_gbps: float | None = None) -> Capacity:
    mem = setup.memory(isl)
    if not mem.fits:
        return NONE
    alone, service = prefill_service_s(setup, isl)
    transfer = kv_handoff_s(setup, isl, link_gbps)
    budget = slo.ttft_ms * 1e-3 - alone - transfer
    if budget < 0:
        return Capacity(0.0, (alone + transfer) * 1e3, 0.0, 0.0, "slo_floor")
    p = slo.percentile / 100

    def ok(rate):
        return md1_wait_percentile(p, rate, service) <= budget

    rate = _max_rate(ok, 0.999 / service)
    ttft = md1_wait_percentile(p, rate, service) + alone + transfer
    return Capacity(rate, ttft * 1e3, 0.0, 0.0, "ttft")


def decode_capacity(setup: Setup, isl: float, osl: float, slo: Slo) -> Capacity:
    mem = setup.memory(isl + osl)
    if not mem.fits:
        return NONE
    ctx = isl + osl / 2
    tpot = lambda b: setup.step(StepShape(decode_seqs=b, decode_context=ctx)).time_s  # noqa: E731
    limit_s = slo.tpot_ms * 1e-3
    cap_b = float(mem.max_batch)
    if tpot(1.0) > limit_s:
        return Capacity(0.0, 0.0, tpot(1.0) * 1e3, 0.0, "slo_floor")

    def ok(b):
        bp = batch_at_percentile(b, slo.z)
        return bp <= cap_b and tpot(bp) <= limit_s

    b = _max_rate(ok, cap_b)
    bp = batch_at_percentile(b, slo.z)
    binding = "tpot" if bp < cap_b * 0.999 else ("max_num_seqs" if cap_b >= setup.engine.max_num_seqs *
                                                    setup.par.dp else "kv_memory")
    return Capacity(b / (osl * tpot(b)), 0.0, tpot(bp) * 1e3, b, binding)


def collocated_capacity(setup: Setup, isl: float, osl: float, slo: Slo) -> Capacity:
    """Chunked prefill with budget C = setup.chunk tokens per iteration.
    At rate λ an iteration of length T carries λ·T·isl prompt tokens and B = λ·T·osl decode sequences
    (fixed point in T); feasible iff λ·T·(isl + osl) ≤ C, B_p ≤ max batch, T(B_p) ≤ TPOT and
    TTFT_p = W_p + ⌈isl / (C − B)⌉·T ≤ TTFT, the prompt share C − B served as an M/D/1 queue."""
    mem = setup.memory(isl + osl)
    if not mem.fits:
        return NONE
    C, ctx, p = setup.chunk, isl + osl / 2, slo.percentile / 100
    cap_b = float(mem.max_batch)

    def state(rate):
        t = setup.step(StepShape(decode_seqs=1, decode_context=ctx, prefill_tokens=isl, prefill_seq_len=isl)).time_s
        for _ in range(8):  # T = step(λT·osl decodes, λT·isl prompt tokens): a contraction, converges fast
            b, pre = rate * t * osl, min(rate * t * isl, C)
            t_new = setup.step(StepShape(b, ctx, pre, isl)).time_s
            if abs(t_new - t) < 1e-4 * t:
                t = t_new
                break
            t = t_new
        b = rate * t * osl
        bp = batch_at_percentile(b, slo.z)
        t_p = setup.step(StepShape(bp, ctx, min(rate * t * isl, C), isl)).time_s
        share = C - bp
        if share <= 0 or rate * t * (isl + osl) > C:
            return t, b, t_p, math.inf, "chunk_budget"
        chunks = math.ceil(isl / share)
        service = chunks * t
        wait = md1_wait_percentile(p, rate, isl / share * t)
        return t, b, t_p, wait + service, ""

    def ok(rate):
        t, b, t_p, ttft, why = state(rate)
        return not why and batch_at_percentile(b, slo.z) <= cap_b and t_p <= slo.tpot_ms * 1e-3 \
            and ttft <= slo.ttft_ms * 1e-3

    floor = state(1e-9)
    if floor[2] > slo.tpot_ms * 1e-3:
        return Capacity(0.0, floor[3] * 1e3, floor[2] * 1e3, 0.0, "slo_floor")
    if floor[3] > slo.ttft_ms * 1e-3:
        return Capacity(0.0, floor[3] * 1e3, floor[2] * 1e3, 0.0, "slo_floor")
    hi = C / ((isl + osl) * floor[0])
    rate = _max_rate(ok, hi)
    t, b, t_p, ttft, _ = state(rate)
    probe = state(rate * 1.01)
    if probe[4]:
        binding = probe[4]
    elif batch_at_percentile(probe[1], slo.z) > cap_b:
        binding = "max_num_seqs" if cap_b >= setup.engine.max_num_seqs * setup.par.dp else "kv_memory"
    elif probe[2] > slo.tpot_ms * 1e-3:
        binding = "tpot"
    else:
        binding = "ttft"
    return Capacity(rate, ttft * 1e3, t_p * 1e3, b, binding)
