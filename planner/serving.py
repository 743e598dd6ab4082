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

from planner.estimate import Setup
from planner.perf import comm
from planner.perf.step import StepShape
from planner.workload import Slo

BISECTION_STEPS = 16  # resolution 2^-16 of the bracket: far below the model's own error


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
    otherwise bisection on Crommelin's sum within [0, 4S]."""
    rho = rate * service_s
    if rho >= 1:
        return math.inf
    if 1 - rho >= p or rho <= 0:  # P(W = 0) = 1 − ρ
        return 0.0
    c, theta = md1_tail_decay(rho)
    t_tail = math.log(c / (1 - p)) / theta
    if t_tail >= 4:
        return t_tail * service_s
    lo, hi = 0.0, 4.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if md1_wait_cdf(mid, rho, 1.0) < p:
            lo = mid
        else:
            hi = mid
    return hi * service_s


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


def prefill_ttft_s(setup: Setup, isl: float, slo: Slo, rate: float, link_gbps: float | None = None) -> float:
    """p-th percentile TTFT of a prefill instance at `rate`: W_p (M/D/1) + prefill alone + KV hand-off."""
    alone, service = prefill_service_s(setup, isl)
    return md1_wait_percentile(slo.percentile / 100, rate, service) + alone + kv_handoff_s(setup, isl, link_gbps)


def decode_tpot_s(setup: Setup, isl: float, osl: float, slo: Slo, rate: float) -> float:
    """p-th percentile TPOT of a decode instance at `rate`: fixed point B = λ·osl·TPOT(B), then TPOT(B_p)."""
    ctx = isl + osl / 2
    t = setup.step(StepShape(decode_seqs=1, decode_context=ctx)).time_s
    for _ in range(30):
        t_new = setup.step(StepShape(decode_seqs=max(rate * osl * t, 1.0), decode_context=ctx)).time_s
        if abs(t_new - t) < 1e-6 * t:
            break
        t = t_new
    bp = batch_at_percentile(max(rate * osl * t, 1.0), slo.z)
    return setup.step(StepShape(decode_seqs=bp, decode_context=ctx)).time_s


def prefill_capacity(setup: Setup, isl: float, slo: Slo, link_gbps: float | None = None) -> Capacity:
    if not setup.memory(isl).fits:
        return NONE
    _, service = prefill_service_s(setup, isl)
    limit_s = slo.ttft_ms * 1e-3
    floor = prefill_ttft_s(setup, isl, slo, 0.0, link_gbps)
    if floor > limit_s:
        return Capacity(0.0, floor * 1e3, 0.0, 0.0, "slo_floor")
    rate = _max_rate(lambda r: prefill_ttft_s(setup, isl, slo, r, link_gbps) <= limit_s, 0.999 / service)
    return Capacity(rate, prefill_ttft_s(setup, isl, slo, rate, link_gbps) * 1e3, 0.0, 0.0, "ttft")


def _kv_binding(setup: Setup, max_batch: float) -> str:
    return "max_num_seqs" if max_batch >= setup.engine.max_num_seqs * setup.par.dp else "kv_memory"


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
    binding = "tpot" if bp < cap_b * 0.999 else _kv_binding(setup, cap_b)
    return Capacity(b / (osl * tpot(b)), 0.0, tpot(bp) * 1e3, b, binding)


@dataclass(frozen=True)
class CollocatedState:
    """A chunked-prefill instance at arrival rate λ."""
    iteration_s: float  # mean iteration time T
    batch: float  # mean decode batch B = λ·T·osl
    tpot_s: float  # iteration time at the batch's p-th percentile
    ttft_s: float  # p-th percentile TTFT (inf when the chunk budget cannot carry the load)
    over_budget: bool  # λ·T·(isl + osl) > C: prompts arrive faster than the chunks carry them


def collocated_state(setup: Setup, isl: float, osl: float, slo: Slo, rate: float) -> CollocatedState:
    """Chunked prefill with budget C = setup.chunk tokens per iteration (Sarathi-Serve, DESIGN §4):
    an iteration of length T carries λ·T·isl prompt tokens and B = λ·T·osl decodes (fixed point in T);
    TTFT_p = W_p + ⌈isl / (C − B_p)⌉·T_chunk (an iteration carrying a prompt chunk), the prompt share C − B_p of each iteration served as an M/D/1 queue."""
    C, ctx = setup.chunk, isl + osl / 2
    t = setup.step(StepShape(decode_seqs=1, decode_context=ctx, prefill_tokens=isl, prefill_seq_len=isl)).time_s
    for _ in range(8):  # T = step(λT·osl decodes, λT·isl prompt tokens): a contraction, converges fast
        t_new = setup.step(StepShape(rate * t * osl, ctx, min(rate * t * isl, C), isl)).time_s
        converged = abs(t_new - t) < 1e-3 * t
        t = t_new
        if converged:
            break
    b = rate * t * osl
    bp = batch_at_percentile(b, slo.z)
    t_p = setup.step(StepShape(bp, ctx, min(rate * t * isl, C), isl)).time_s
    share = C - bp
    if share <= 0 or rate * t * (isl + osl) > C:
        return CollocatedState(t, b, t_p, math.inf, True)
    chunk = min(isl, share)
    t_chunk = setup.step(StepShape(bp, ctx, max(chunk, min(rate * t * isl, C)), isl)).time_s  # carries a prompt
    wait = md1_wait_percentile(slo.percentile / 100, rate, isl / share * t_chunk)
    return CollocatedState(t, b, t_p, wait + math.ceil(isl / share) * t_chunk, False)


def collocated_capacity(setup: Setup, isl: float, osl: float, slo: Slo) -> Capacity:
    """Largest λ with B_p ≤ max batch, T(B_p) ≤ TPOT and TTFT_p ≤ TTFT."""
    mem = setup.memory(isl + osl)
    if not mem.fits:
        return NONE
    cap_b, tpot_s, ttft_s = float(mem.max_batch), slo.tpot_ms * 1e-3, slo.ttft_ms * 1e-3

    def why_not(st: CollocatedState) -> str:
        if st.over_budget:
            return "chunk_budget"
        if batch_at_percentile(st.batch, slo.z) > cap_b:
            return _kv_binding(setup, cap_b)
        if st.tpot_s > tpot_s:
            return "tpot"
        return "ttft" if st.ttft_s > ttft_s else ""

    floor = collocated_state(setup, isl, osl, slo, 1e-9)
    if why_not(floor):
        return Capacity(0.0, floor.ttft_s * 1e3, floor.tpot_s * 1e3, 0.0, "slo_floor")
    hi = setup.chunk / ((isl + osl) * floor.iteration_s)
    rate = _max_rate(lambda r: not why_not(collocated_state(setup, isl, osl, slo, r)), hi)
    st = collocated_state(setup, isl, osl, slo, rate)
    binding = why_not(collocated_state(setup, isl, osl, slo, rate * 1.01)) or "chunk_budget"
    return Capacity(rate, st.ttft_s * 1e3, st.tpot_s * 1e3, st.batch, binding)


def latency_at(setup: Setup, role: str, isl: float, osl: float, slo: Slo, rate: float,
               link_gbps: float | None = None) -> tuple[float, float]:
    """(TTFT_p ms, TPOT_p ms) an instance of `role` shows at per-instance `rate` (0 where the role has none)."""
    if role == "prefill":
        return prefill_ttft_s(setup, isl, slo, rate, link_gbps) * 1e3, 0.0
    if role == "decode":
        return 0.0, decode_tpot_s(setup, isl, osl, slo, rate) * 1e3
    st = collocated_state(setup, isl, osl, slo, rate)
    return st.ttft_s * 1e3, st.tpot_s * 1e3
