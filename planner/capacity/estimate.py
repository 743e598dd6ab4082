"""Latency and throughput of one instance at a fixed concurrency (or offline max batch, or an arrival rate).

Two regimes, because benchmarks measure two different things:
- Closed loop, N clients with fixed ISL/OSL (benchmark tools, offline max-throughput runs), M = min(N, max batch)
  running. Requests started together finish together, so prompts keep arriving in groups that fill the
  chunk budget C: per cycle of a request's life, K = M·isl/C iterations are mixed (full chunk, time T_m) and the
  rest decode only (T_d).
    K ≤ osl:  TTFT = (⌈isl/C⌉ + ½)·T_m      TPOT = ((K−1)·T_m + (osl−K)·T_d) / (osl−1)
    K > osl:  prefill-bound, prompts queue:  TTFT += (K − osl)·T_m,  TPOT = T_m
    cycle = K·T_m + (osl − K)·T_d (or K·T_m);  output tokens/s = M·osl / cycle;  N > M adds (N−M)/M·cycle
- Open loop (Poisson arrivals at rate λ, what `optimize` plans for): desynchronised steady state, every
  iteration decodes N sequences at mean context isl + osl/2 and carries the N·isl/osl prompt tokens that
  arrive per iteration; N from Little's law N = λ·(TTFT + (osl − 1)·TPOT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from planner.core.bounds import MAX_BATCH, MAX_RATE_RPS, bounded
from planner.core.errors import InfeasibleError
from planner.core.model import ModelSpec
from planner.core.parallel import ParallelConfig
from planner.core.roots import root
from planner.perf.memory import MemoryBreakdown, memory_breakdown
from planner.perf.step import StepShape, StepTime, step_time

if TYPE_CHECKING:
    from hwdb import EngineProfile, GpuSpec
    from planner.levers.spec import Speculation


@dataclass(frozen=True)
class Estimate:
    ttft_ms: float
    tpot_ms: float
    batch: float  # concurrent sequences in steady state
    throughput_tokens_per_s: float  # output tokens/s of the instance
    tokens_per_s_per_gpu: float
    request_rate_rps: float  # completed requests/s at this concurrency
    gpus: int
    memory: MemoryBreakdown
    decode_step: StepTime
    prefill_step: StepTime


@dataclass(frozen=True)
class Setup:
    """One configured instance: everything fixed about it except its load. Built by planner.instance (where each
    lever is applied, in one order); serving, energy, estimate and simulate evaluate it through memory() and
    step(), so a lever that changes the instance reaches all of them."""
    model: ModelSpec
    gpu: GpuSpec
    par: ParallelConfig
    engine: EngineProfile
    dtype: str = "bf16"
    kv_dtype: str = "bf16"
    chunk_tokens: int = 0  # 0 -> the engine's default token budget
    skew: float = 1.0  # extra MoE load imbalance from skewed routing (solvers.experts), ≥ 1
    spec: Speculation | None = None  # speculative decoding at a fixed depth k (planner/levers/spec.py); None: off
    kv_compression: float = 1.0  # P -> D KV transfer ships kv_bytes / kv_compression (KVServe-style codecs)
    link_gbps: float | None = None  # P -> D path when the pools sit apart, GB/s (planner/levers/kvtransfer.py)

    @property
    def chunk(self) -> int:
        return self.chunk_tokens or self.engine.default_chunk_tokens

    def chunk_units(self) -> tuple[float, float]:
        """(token budget of an iteration, budget tokens per decoding sequence) in the units of step(): one
        iteration per token, or per output token under speculation (Speculation.chunk_units)."""
        return self.spec.chunk_units(self.chunk) if self.spec is not None else (float(self.chunk), 1.0)

    def memory(self, context_tokens: float) -> MemoryBreakdown:
        """Memory per GPU at `context_tokens` per sequence, a speculative drafter's weights and KV included."""
        from planner.levers.spec import extra_memory

        w, kv = extra_memory(self.spec, self.dtype, self.kv_dtype) if self.spec is not None else (0.0, 0.0)
        return memory_breakdown(self.model, self.gpu, self.par, dtype=self.dtype, kv_dtype=self.kv_dtype,
                                context_tokens=context_tokens, chunk_tokens=self.chunk, engine=self.engine,
                                extra_weight_bytes=w, extra_kv_bytes_per_token=kv)

    def step(self, shape: StepShape) -> StepTime:
        """One engine iteration; under speculation a decode-carrying one is timed per output token."""
        if self.spec is not None and shape.decode_seqs > 0:
            from planner.levers.spec import speculative_step

            return speculative_step(self, shape)
        return step_time(self.model, self.gpu, self.par, shape, engine=self.engine, dtype=self.dtype,
                         kv_dtype=self.kv_dtype, skew=self.skew)


def require_fit(setup: Setup, isl: float, osl: float) -> MemoryBreakdown:
    mem = setup.memory(isl + osl)
    if mem.fits:
        return mem
    where = f"{setup.model.name} does not fit on {setup.gpu.name} with {setup.par.label()}: "
    hint = "use more GPUs per instance (higher tp/pp/ep) or a smaller dtype (--dtype fp8)"
    if mem.kv_cache_gb <= 0:
        raise InfeasibleError(where + f"weights {mem.weights_gb:.1f} GB + workspace {mem.activations_gb:.1f} GB per "
                              f"GPU exceed the usable {mem.usable_gb:.1f} GB by {-mem.kv_cache_gb:.1f} GB",
                              binding="memory", hint=hint)
    one_seq_gb = setup.model.kv_bytes_per_sequence(isl + osl, setup.kv_dtype) / setup.model.kv_bytes_per_token(
        setup.kv_dtype) * mem.kv_bytes_per_token / 1e9
    raise InfeasibleError(where + f"weights and workspace fit, but the {mem.kv_cache_gb:.1f} GB left per GPU cannot hold "
                          f"one {isl + osl:g}-token sequence's KV ({one_seq_gb:.1f} GB per GPU)", binding="memory",
                          hint=hint + " or --kv-dtype fp8")


def prefill_share(setup: Setup, decode_seqs: float) -> float:
    """Prompt tokens one mixed iteration can carry: the chunk budget left after the decode tokens."""
    return max(setup.chunk - decode_seqs, setup.chunk / 8)


def _check_batch(batch: float) -> None:
    bounded(batch, "batch", 1, MAX_BATCH)


def at_concurrency(setup: Setup, isl: float, osl: float, batch: float) -> Estimate:
    """Closed loop with `batch` clients: prompts arrive in chunk-filling groups (module docstring)."""
    mem = require_fit(setup, isl, osl)
    _check_batch(batch)
    m = min(batch, mem.max_batch)
    chunk, ctx = setup.chunk, isl + osl / 2
    k = m * isl / chunk  # mixed (prefill-carrying) iterations per cycle
    mixed = setup.step(StepShape(m, ctx, min(chunk, m * isl), isl))
    decode = setup.step(StepShape(m, ctx))
    ttft = (math.ceil(isl / chunk) + 0.5 * (m > 1)) * mixed.time_s
    if k <= osl:
        cycle = k * mixed.time_s + (osl - k) * decode.time_s
        tpot = (max(k - 1, 0) * mixed.time_s + (osl - k) * decode.time_s) / max(osl - 1, 1)
    else:  # prefill-bound: every iteration carries a full chunk and prompts wait for their turn
        cycle = k * mixed.time_s
        ttft += (k - osl) * mixed.time_s
        tpot = mixed.time_s
    ttft += (batch - m) / m * cycle
    tput = m * osl / cycle
    return Estimate(ttft * 1e3, tpot * 1e3, m, tput, tput / setup.par.gpus, m / cycle, setup.par.gpus, mem,
                    decode, mixed)


def steady_state(setup: Setup, isl: float, osl: float, batch: float) -> Estimate:
    """Desynchronised continuous batching with `batch` sequences in flight (open-loop arrivals)."""
    mem = require_fit(setup, isl, osl)
    _check_batch(batch)
    if batch > mem.max_batch:
        raise InfeasibleError(f"batch {batch:g} exceeds the {mem.max_batch} sequences the KV cache / engine "
                              f"holds at context {isl + osl:g}", binding="kv_memory",
                              hint=f"use --batch ≤ {mem.max_batch} or more GPUs per instance")
    ctx = isl + osl / 2
    share = prefill_share(setup, batch)
    steady_prefill = min(batch * isl / max(osl, 1), share) if osl > 1 else 0.0
    decode = setup.step(StepShape(batch, ctx, steady_prefill, isl))
    chunk = min(isl, share)
    mixed = setup.step(StepShape(batch - 1, ctx, chunk, isl))
    ttft = 0.5 * decode.time_s * (batch > 1) + math.ceil(isl / chunk) * mixed.time_s
    tpot = decode.time_s
    rate = batch / (ttft + max(osl - 1, 0) * tpot)
    tput = rate * osl
    return Estimate(ttft * 1e3, tpot * 1e3, batch, tput, tput / setup.par.gpus, rate, setup.par.gpus, mem,
                    decode, mixed)


def offline(setup: Setup, isl: float, osl: float) -> Estimate:
    """Max-throughput run: the largest batch the KV cache and the engine's max_num_seqs allow."""
    return at_concurrency(setup, isl, osl, require_fit(setup, isl, osl).max_batch)


def at_rate(setup: Setup, isl: float, osl: float, rate_rps: float) -> Estimate:
    """Open-loop arrivals: concurrency from Little's law N = λ·(TTFT + (osl−1)·TPOT(N)), solved by Brent's method."""
    bounded(rate_rps, "rate", 0, MAX_RATE_RPS, lo_open=True, unit=" req/s")
    top = steady_state(setup, isl, osl, require_fit(setup, isl, osl).max_batch)
    if rate_rps > top.request_rate_rps:
        raise InfeasibleError(f"rate {rate_rps:g} req/s exceeds this instance's capacity of "
                              f"{top.request_rate_rps:.3g} req/s", binding="capacity",
                              hint="add instances (planner optimize sizes the fleet) or lower the rate")
    batch = root(lambda b: steady_state(setup, isl, osl, b).request_rate_rps - rate_rps, 1.0, float(top.batch))
    return steady_state(setup, isl, osl, batch)


def breakdown_rows(step: StepTime) -> list[dict]:
    """Per-op share of an iteration and the resource that bounds it (for tables and JSON)."""
    total = step.time_s
    rows = [dict(op=o.name, kind=o.kind, time_ms=o.time_s * 1e3, share=o.time_s / total, bound=o.bound)
            for o in sorted(step.ops, key=lambda o: -o.time_s)]
    rows.append(dict(op="engine_overhead", kind="cpu", time_ms=step.overhead_s * 1e3,
                     share=step.overhead_s / total, bound="cpu"))
    return rows


