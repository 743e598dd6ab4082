"""SLO-aware capacity of one instance per role and request class (docs/architecture.md, "Formulas").

Goodput of an instance = the highest request rate at which the p-th percentile of TTFT and of TPOT both meet
the SLO (DistServe's definition). Three roles:
  prefill  (disaggregated): M/D/1 queue of prompts; TTFT_p = W_p + the batch carrying the prompt + KV transfer.
  decode   (disaggregated): Little's law B = λ·osl·TPOT(B); TPOT_p from the spread of the batch a request sees
           over its life; the batch's p-th percentile must fit the KV cache.
  collocated (chunked prefill, Sarathi): each iteration carries the decode batch plus waiting prompts up to
           the chunk budget C; mean iteration = mixture of decode-only and prompt-carrying iterations, TPOT_p
           from the per-request spread of that mixture, TTFT_p = W_p + ⌈isl / (C − B)⌉·T_chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.capacity.estimate import Setup
from planner.capacity.queueing import batch_at_percentile, gg1_wait_percentile
from planner.core.roots import largest_true
from planner.core.vocab import Role
from planner.core.workload import RequestClass
from planner.perf import comm
from planner.perf.step import StepShape, StepTime


@dataclass(frozen=True)
class Capacity:
    """What one instance sustains for one request class in one role, and why not more."""
    rate_rps: float  # goodput: max req/s meeting both SLO percentiles (0: cannot meet them)
    ttft_ms: float  # predicted p-th percentile TTFT at that rate
    tpot_ms: float  # predicted p-th percentile TPOT at that rate
    batch: float  # mean concurrent decode sequences at that rate
    binding: str  # what stops a higher rate: ttft | tpot | kv_memory | chunk_budget | max_num_seqs | slo_floor


NONE = Capacity(0.0, math.inf, math.inf, 0.0, "slo_floor")


# ---- roles -------------------------------------------------------------------------------------------------

def kv_handoff_s(setup: Setup, isl: float) -> float:
    """KV of one prompt shipped from a prefill instance to a decode instance (each prefill GPU sends its shard),
    `kv_compression`× smaller when a transfer codec compresses it (docs/levers/kv-transfer.md), over the
    instance's P -> D link when the pools sit apart (setup.link_gbps, planner/levers/kvtransfer.py)."""
    kv = setup.model.kv_bytes_per_sequence(isl, setup.kv_dtype) / setup.kv_compression
    return comm.kv_transfer_s(kv, setup.gpu, same_node=False, link_gbps=setup.link_gbps,
                              gpus_sending=setup.par.gpus)


def prefill_batch(setup: Setup, isl: float, rate: float, ca2: float = 1.0) -> tuple[StepTime, float]:
    """(the iteration that carries a prompt, the per-prompt service time) of a prefill queue at `rate`. The
    engine takes every waiting prompt into the next iteration (up to its token budget), so an iteration holds
    k = 1 + λ·E[W] prompts, E[W] = c_a²·ρS/(2(1 − ρ)) (M/D/1 mean wait, × c_a² for bursty arrivals, Kingman),
    and amortises its cost over k, not over a full budget: a fixed point in S, three steps from the service
    with prompts batched to the budget (the value at rate 0). Stops where ρ = λS reaches 1 (the caller's queue
    is unstable)."""
    alone = setup.step(StepShape(prefill_tokens=isl, prefill_seq_len=isl))
    per_batch = max(1, int(setup.chunk // isl))
    batched = setup.step(StepShape(prefill_tokens=isl * per_batch, prefill_seq_len=isl)).time_s / per_batch
    own, service = alone, min(alone.time_s, batched)
    if rate > 0 and isl < setup.chunk:
        for _ in range(3):
            rho = rate * service
            if rho >= 1:
                break
            k = min(setup.chunk / isl, 1 + rate * rho * service * ca2 / (2 * (1 - rho)))
            batch = setup.step(StepShape(prefill_tokens=k * isl, prefill_seq_len=isl))
            own = batch if batch.time_s > alone.time_s else alone
            service = max(service, own.time_s / k)
    return own, service


def prefill_ttft_s(setup: Setup, cls: RequestClass, rate: float, handoff: bool = True) -> float:
    """p-th percentile TTFT of a prefill instance at `rate`: W_p (M/D/1 at the batched per-prompt service)
    + the iteration that carries the prompt (prefill_batch: a prompt's first token comes when its whole batch
    ends; checked against `planner simulate`, where prefill alone after W_p came out ~25% short at p90)
    + KV hand-off. Bursty arrivals (c_a² ≠ 1): W_p scales by c_a² (Kingman, gg1_wait_percentile).
    handoff=False: the KV stays on the GPU (an intra-GPU multiplexed instance, planner/levers/multiplex.py)."""
    ca2 = cls.arrival_ca2
    own, service = prefill_batch(setup, cls.isl, rate, ca2)
    if rate * service >= 1:
        return math.inf
    return (gg1_wait_percentile(cls.slo.percentile / 100, rate, service, ca2) + own.time_s
            + (kv_handoff_s(setup, cls.isl) if handoff else 0.0))


def _decode_spread(setup: Setup, ctx: float, b: float, z: float, ca2: float = 1.0) -> tuple[float, float, float]:
    """(iteration time, p-th percentile TPOT, p-th percentile batch) of a decode instance holding b sequences
    on average. A request's TPOT averages its osl − 1 iterations, over which the batch it sees moves with the
    Poisson arrivals: Var(mean batch over a life) ≈ 2b/3 (M/G/∞ window average); a larger batch slows the
    iteration, which keeps sequences longer, amplifying the deviation by 1/(1 − g), g = λ·osl·T' = b·T'/T.
    The KV cache must hold the Poisson batch percentile b + z·√b (checked against `planner simulate`).
    Bursty arrivals: both variances scale by c_a² (batch_at_percentile)."""
    t = setup.step(StepShape(decode_seqs=b, decode_context=ctx)).time_s
    d = max(max(z, 0.0) * math.sqrt(b), 1.0)
    t1 = (setup.step(StepShape(decode_seqs=b + d, decode_context=ctx)).time_s - t) / d
    g = b * t1 / t
    if g >= 1:
        return t, math.inf, math.inf
    z = max(z, 0.0)
    return t, t + z * t1 * math.sqrt(2 * b * ca2 / 3) / (1 - g), batch_at_percentile(b, z, ca2)


def decode_iteration_s(setup: Setup, cls: RequestClass, rate: float) -> float:
    """Mean iteration time T of a decode instance at `rate`: the fixed point T = T_step(B), B = max(λ·osl·T, 1)
    (Little's law), iterated from the single-sequence step to a relative change below 1e-6."""
    ctx = cls.isl + cls.osl / 2
    t = setup.step(StepShape(decode_seqs=1, decode_context=ctx)).time_s
    for _ in range(30):
        t_new = setup.step(StepShape(decode_seqs=max(rate * cls.osl * t, 1.0), decode_context=ctx)).time_s
        if abs(t_new - t) < 1e-6 * t:
            break
        t = t_new
    return t


def decode_tpot_s(setup: Setup, cls: RequestClass, rate: float) -> float:
    """p-th percentile TPOT of a decode instance at `rate`: the spread of the requests' TPOT (_decode_spread)
    around the fixed point of decode_iteration_s."""
    b = max(rate * cls.osl * decode_iteration_s(setup, cls, rate), 1.0)
    return _decode_spread(setup, cls.isl + cls.osl / 2, b, cls.slo.z, cls.arrival_ca2)[1]


def prefill_capacity(setup: Setup, cls: RequestClass, handoff: bool = True) -> Capacity:
    if not setup.memory(cls.isl).fits:
        return NONE
    _, service = prefill_batch(setup, cls.isl, 0.0)
    limit_s = cls.slo.ttft_ms * 1e-3
    floor = prefill_ttft_s(setup, cls, 0.0, handoff)
    if floor > limit_s:
        return Capacity(0.0, floor * 1e3, 0.0, 0.0, "slo_floor")
    rate = largest_true(lambda r: prefill_ttft_s(setup, cls, r, handoff) <= limit_s, 0.999 / service)
    return Capacity(rate, prefill_ttft_s(setup, cls, rate, handoff) * 1e3, 0.0, 0.0, "ttft")


def _kv_binding(setup: Setup, max_batch: float) -> str:
    return "max_num_seqs" if max_batch >= setup.engine.max_num_seqs * setup.par.dp else "kv_memory"


def decode_capacity(setup: Setup, cls: RequestClass) -> Capacity:
    isl, osl, slo, ca2 = cls.isl, cls.osl, cls.slo, cls.arrival_ca2
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
        _, tpot_p, bp = _decode_spread(setup, ctx, b, slo.z, ca2)
        return bp <= cap_b and tpot_p <= limit_s

    b = largest_true(ok, cap_b)
    t, tpot_p, bp = _decode_spread(setup, ctx, b, slo.z, ca2)
    binding = "tpot" if bp < cap_b * 0.999 else _kv_binding(setup, cap_b)
    return Capacity(b / (osl * t), 0.0, tpot_p * 1e3, b, binding)


@dataclass(frozen=True)
class CollocatedState:
    """A chunked-prefill instance at arrival rate λ."""
    iteration_s: float  # mean iteration time T
    batch: float  # mean decode batch B = λ·T·osl
    tpot_s: float  # p-th percentile of the requests' TPOT (inf when the load is unstable)
    ttft_s: float  # p-th percentile TTFT (inf when the chunk budget cannot carry the load)
    over_budget: bool  # prompts arrive faster than the chunks carry them
    batch_p: float = 0.0  # p-th percentile of the decode batch (what the KV cache must hold)


def _prompt_mix(step, chunk: float, isl: float, rate: float, b: float, t: float,
                w: float = 1.0) -> tuple[float, float, float, float]:
    """Iterations of a greedy chunked-prefill engine at decode batch b (vLLM / Sarathi: decodes first, then
    waiting prompts FCFS up to the budget) do not carry the mean prompt load λ·T·isl each: some carry none,
    some a whole prompt or a full chunk, and the step time is convex in the prompt tokens (flat while the
    decode's weight reads hide them, then compute-bound), so the mean iteration is a mixture, not step(mean).
    Units of u = min(isl, C − b) tokens (a whole prompt, or a full chunk of a longer one) arrive m = λ·T·isl/u
    per iteration: whole prompts as a Poisson count (the ones beyond the first costing the compute-bound
    slope), chunks at most one per iteration. Returns (mean iteration time, prompt cost per prompt token κ,
    m, u)."""
    share = chunk - w * b  # w: budget tokens per decoding sequence (k + 1 per E with speculation)
    u = min(isl, share)
    m = rate * t * isl / u
    t_dec = step(b, 0.0)
    h1 = step(b, u) - t_dec
    if u < share:
        p1, extra = -math.expm1(-m), m + math.expm1(-m)  # P(≥ 1 prompt), E[prompts beyond the first]
        top = min(2 * u, share)
        h2 = (step(b, top) - t_dec - h1) / (top - u) * u
    else:
        p1, extra, h2 = min(m, 1.0), max(m - 1.0, 0.0), h1
    cost = p1 * h1 + extra * h2
    kappa = cost / (rate * t * isl) if rate * t * isl > 0 else h1 / u
    return t_dec + cost, kappa, m, u


def collocated_state(setup: Setup, cls: RequestClass, rate: float, t_guess: float | None = None) -> CollocatedState:
    """Chunked prefill with budget C = setup.chunk tokens per iteration (Sarathi-Serve), checked
    against `planner simulate` (docs/accuracy.md):
      mean iteration  T = T_dec(B) + λ·T·isl·κ (the prompt-load mixture of _prompt_mix), B = λ·T·osl;
      TPOT_p          a request's TPOT averages the ~osl iterations of its life L = (osl − 1)·T, so its spread
                      comes from the Poisson number of prompts prefilled and of decodes joining during L:
                      Var = λL·(c/n)² + λ·(2L/3)·T'² + λL·(c/n)·T' with c = isl·κ the iteration time one
                      prompt adds, T' = dT/dB, n = osl − 1; both feed back (a slower iteration lets more work
                      in), amplifying the deviation by 1/(1 − G), G = λ·(osl·T' + c). TPOT_p = T + z·sd;
      TTFT_p          W_p (the prompt share C − B_p of each iteration as an M/D/1 queue whose service is a
                      prompt's isl/(C − B_p) of a full-chunk iteration) + ⌈isl/(C − B_p)⌉ chunk iterations;
                      when whole prompts fit a chunk, at least the iteration in flight (its residual's
                      p-quantile, longer when it carries prompts) plus the next one, which also carries the
                      prompts that arrived meanwhile. B_p = B + z·√(B/(1 − G)) (the same feedback).
    Remaining differences from the simulation: docs/accuracy.md.
    Bursty arrivals (squared inter-arrival CV c_a² ≠ 1, docs/levers/bursty.md): every Poisson count above
    (prompts and decodes joining during a life, the batch) has variance × c_a², and the prompt queue's W_p
    scales by c_a² (Kingman, gg1_wait_percentile)."""
    isl, osl, slo, ca2 = cls.isl, cls.osl, cls.slo, cls.arrival_ca2
    ctx = isl + osl / 2
    C, w = setup.chunk_units()  # budget, and budget tokens per decoding sequence (k + 1 per E with speculation)
    memo: dict = {}

    def step(b: float, p: float) -> float:
        v = memo.get((b, p))
        if v is None:
            v = memo[(b, p)] = setup.step(StepShape(b, ctx, p, isl)).time_s
        return v

    def fixed_map(t: float) -> float | None:
        """T = T_dec(B) + λ·T·isl·κ with B = λ·t·osl, κ at t, solved for T; None where the load is unstable."""
        b = rate * t * osl
        if C - w * b <= 0:
            return None
        mean, kappa, m, u = _prompt_mix(step, C, isl, rate, b, t, w)
        g = rate * isl * kappa
        if g >= 1 or (u < isl and m >= 1):
            return None
        return (mean - rate * t * isl * kappa) / (1 - g)

    # fixed point by secant steps from the single-request iteration (a plain iteration converges only linearly,
    # at the rate of the load's feedback gain); a step into the unstable region is pulled back halfway
    t_prev = step(1.0, min(isl, C))
    if t_guess is not None and t_guess > t_prev and fixed_map(t_guess) is not None:
        t_prev = t_guess  # the fixed point at a nearby rate (collocated_capacity's bisection)
    f_prev = (fixed_map(t_prev) or math.inf) - t_prev
    t, over = t_prev + f_prev, not math.isfinite(f_prev)
    for _ in range(40):
        if over:
            break
        ft = fixed_map(t)
        for _ in range(8):
            if ft is not None:
                break
            t = (t + t_prev) / 2
            ft = fixed_map(t)
        if ft is None:
            over = True
            break
        f = ft - t
        if abs(f) <= 1e-4 * t:
            break  # keep the t whose step times are memoised
        t_new = t - f * (t - t_prev) / (f - f_prev) if f != f_prev else ft
        t_prev, f_prev, t = t, f, (t_new if math.isfinite(t_new) and t_new > 0 else ft)
    else:
        over = True
    b = rate * t * osl
    bp = batch_at_percentile(b, slo.z, ca2)
    share = C - w * bp
    if over or share <= 0 or rate * t * (isl + w * osl) > C:
        return CollocatedState(t, b, math.inf, math.inf, True)
    mean, kappa, m, u = _prompt_mix(step, C, isl, rate, b, t, w)
    n = max(osl - 1, 1)
    # dT/dB over the mixture, by a difference to the batch percentile (prompt-carrying share held fixed)
    carry = min(1.0, -math.expm1(-m)) if u < C - w * b else min(m, 1.0)
    t0, tu = step(b, 0.0), step(b, u)
    t1 = ((1 - carry) * (step(bp, 0.0) - t0) + carry * (step(bp, u) - tu)) / (bp - b) if bp > b else 0.0
    c = isl * kappa
    gain = rate * (t1 * osl + c)
    if gain >= 1:
        return CollocatedState(t, b, math.inf, math.inf, True)
    life = n * t
    var = rate * life * ((c / n) ** 2 + (2 / 3) * t1 ** 2 + (c / n) * t1) * ca2
    tpot_p = t + max(slo.z, 0.0) * math.sqrt(var) / (1 - gain)
    # the batch itself: Poisson(b) without feedback; the same feedback widens it to variance b / (1 − G)
    bp = b + max(slo.z, 0.0) * math.sqrt(b * ca2 / (1 - gain))
    share = C - w * bp
    if share <= 0:
        return CollocatedState(t, b, tpot_p, math.inf, True, bp)

    p = slo.percentile / 100
    # prompts queue for the share C − B_p of each iteration: while they queue, iterations carry full chunks,
    # so a prompt's service is its isl/share of a full-chunk iteration (M/D/1 at that service time)
    t_chunk = step(bp, min(isl, share))  # an iteration carrying this prompt (or a chunk of it)
    wait = gg1_wait_percentile(p, rate, isl / share * step(bp, share), ca2)
    ttft = wait + math.ceil(isl / share) * t_chunk
    if isl < share:
        t_dec, t_one = step(b, 0.0), step(b, isl)
        busy = min(1.0, -math.expm1(-m) * t_one / t)  # share of time inside an iteration that carries prompts
        # residual of the iteration in flight, p-quantile: U(0, t_one) w.p. busy, else U(0, t_dec); below
        # t_dec ≤ t_one the survival 1 − r·(busy/t_one + (1 − busy)/t_dec) is linear in r
        r = t_one * (1 - (1 - p) / busy) if busy >= 1 - p else p / (busy / t_one + (1 - busy) / t_dec)
        ttft = max(ttft, wait + r + step(bp, min(share, isl * (1 + rate * r))))
    return CollocatedState(t, b, tpot_p, ttft, False, bp)


def collocated_capacity(setup: Setup, cls: RequestClass) -> Capacity:
    """Largest λ with B_p ≤ max batch, T(B_p) ≤ TPOT and TTFT_p ≤ TTFT."""
    isl, osl, slo = cls.isl, cls.osl, cls.slo
    mem = setup.memory(isl + osl)
    if not mem.fits:
        return NONE
    cap_b, tpot_s, ttft_s = float(mem.max_batch), slo.tpot_ms * 1e-3, slo.ttft_ms * 1e-3

    def why_not(st: CollocatedState) -> str:
        if st.over_budget:
            return "chunk_budget"
        if st.batch_p > cap_b:
            return _kv_binding(setup, cap_b)
        if st.tpot_s > tpot_s:
            return "tpot"
        return "ttft" if st.ttft_s > ttft_s else ""

    solved: dict[float, float] = {}  # rate -> mean iteration time, to start the next fixed point nearby

    def state(r: float) -> CollocatedState:
        near = min(solved, key=lambda x: abs(x - r)) if solved else None
        st = collocated_state(setup, cls, r, solved[near] if near is not None else None)
        if not st.over_budget:
            solved[r] = st.iteration_s
        return st

    floor = state(1e-9)
    if why_not(floor):
        return Capacity(0.0, floor.ttft_s * 1e3, floor.tpot_s * 1e3, 0.0, "slo_floor")
    c_units, w = setup.chunk_units()  # the chunk budget in the step model's units (collocated_state)
    rate = largest_true(lambda r: not why_not(state(r)), c_units / ((isl + w * osl) * floor.iteration_s))
    st = state(rate)
    binding = why_not(state(rate * 1.01)) or "chunk_budget"
    return Capacity(rate, st.ttft_s * 1e3, st.tpot_s * 1e3, st.batch, binding)


def role_capacity(setup: Setup, role: Role, cls: RequestClass) -> Capacity:
    """SLO capacity of one instance of `role` (prefill, decode, or collocated: agg) for one request class."""
    if role == Role.prefill:
        return prefill_capacity(setup, cls)
    if role == Role.decode:
        return decode_capacity(setup, cls)
    return collocated_capacity(setup, cls)


def latency_at(setup: Setup, role: Role, cls: RequestClass, rate: float) -> tuple[float, float]:
    """(TTFT_p ms, TPOT_p ms) an instance of `role` shows at per-instance `rate` (0 where the role has none)."""
    if role == Role.prefill:
        return prefill_ttft_s(setup, cls, rate) * 1e3, 0.0
    if role == Role.decode:
        return 0.0, decode_tpot_s(setup, cls, rate) * 1e3
    st = collocated_state(setup, cls, rate)
    return st.ttft_s * 1e3, st.tpot_s * 1e3
