"""Enumerate instance types — (GPU, parallel config, role, chunk) — with their SLO capacity per request class,
and drop the dominated ones before the MILP sees them."""

from __future__ import annotations

from dataclasses import dataclass, replace

from planner.estimate import Setup
from planner.model import ModelSpec
from planner.parallel import ParallelConfig, parallel_configs
from planner.serving import Capacity, collocated_capacity, decode_capacity, prefill_capacity
from planner.workload import RequestClass

ROLES = {"agg": ("agg",), "disagg": ("prefill", "decode"), "auto": ("agg", "prefill", "decode"),
         "multiplex": ("agg", "prefill", "decode")}  # + multiplex instance types (one per SM fraction), below
CHUNK_CHOICES = (2048, 4096, 8192, 16384)  # chunked-prefill token budgets searched for collocated instances
PREFILL_BUDGET_TOKENS = 16384  # batch budget of a dedicated prefill instance


@dataclass(frozen=True)
class Candidate:
    gpu: str
    par: ParallelConfig
    role: str  # agg | prefill | decode
    chunk_tokens: int
    cost_usd_per_h: float
    capacity: dict[str, Capacity]  # request class -> SLO capacity of one instance
    max_batch: int
    skew: float = 1.0  # MoE expert-placement imbalance used
    sm_fraction: float = 0.0  # multiplex role: prefill's share of the SMs (planner/multiplex.py); else 0
    spec_k: int | None = None  # with --spec: draft tokens per verify step chosen (0 = off); None without --spec

    @property
    def name(self) -> str:
        return f"{self.gpu}/{self.role}/{self.par.label()}" + (f"/c{self.chunk_tokens}" if self.role == "agg" else "") \
            + (f"/f{self.sm_fraction:g}" if self.role == "multiplex" else "")

    @property
    def gpus(self) -> int:
        return self.par.gpus


@dataclass(frozen=True)
class SearchSpace:
    model: ModelSpec
    engine: object
    dtype: str = "bf16"
    kv_dtype: str = "bf16"
    mode: str = "auto"
    max_gpus_per_instance: int = 64
    allow_cross_node_tp: bool = False
    link_gbps: float | None = None  # P/D KV path override (GB/s)
    expert_skew: dict | None = None  # gpu-independent: ep -> placement imbalance (from solvers.experts)
    spec: object = None  # planner.spec.SpecConfig: speculative decoding, k searched in 0..k_max
    kv_compression: float = 1.0  # P -> D KV transfer ratio (planner/kvtransfer.py)


def role_capacity(setup: Setup, role: str, cls: RequestClass, link_gbps: float | None) -> Capacity:
    ca2 = cls.arrival_ca2  # 1 (Poisson) unless the class is bursty (issue 8)
    if role == "prefill":
        return prefill_capacity(setup, cls.isl, cls.slo, link_gbps, ca2)
    if role == "decode":
        return decode_capacity(setup, cls.isl, cls.osl, cls.slo, ca2)
    return collocated_capacity(setup, cls.isl, cls.osl, cls.slo, ca2)


def best_spec_depth(setup: Setup, role: str, classes: list[RequestClass], space: SearchSpace,
                    domain: int) -> tuple[dict[str, Capacity], int, Setup]:
    """Speculation depth k ∈ {0, …, k_max} (0 = off) giving this instance type the most capacity — summed over
    the classes, each relative to its best k — the smallest k on ties: (capacities, k, setup with it)."""
    from planner.spec import resolve

    tried = []
    for k in range(space.spec.k_max + 1):
        s = replace(setup, spec=resolve(space.spec, space.model, setup.par, k, domain))
        tried.append((k, s, {c.name: role_capacity(s, role, c, space.link_gbps) for c in classes}))
    top = {c.name: max(caps[c.name].rate_rps for _, _, caps in tried) for c in classes}
    k, s, caps = max(tried, key=lambda t: (sum(t[2][n].rate_rps / top[n] for n in top if top[n] > 0), -t[0]))
    return caps, k, s


def _dominated(a: Candidate, b: Candidate) -> bool:
    """b is dominated by a: same GPU type and role, no more GPUs, at least the capacity for every class."""
    return (a.gpu == b.gpu and a.role == b.role and a.gpus <= b.gpus
            and all(a.capacity[c].rate_rps >= b.capacity[c].rate_rps for c in b.capacity)
            and (a.gpus < b.gpus or any(a.capacity[c].rate_rps > b.capacity[c].rate_rps for c in b.capacity)
                 or a.name < b.name))


def prune(cands: list[Candidate]) -> list[Candidate]:
    keep = [b for b in cands if not any(_dominated(a, b) for a in cands if a is not b)]
    return sorted(keep, key=lambda c: c.name)


def enumerate_candidates(space: SearchSpace, gpus: list, classes: list[RequestClass],
                         inventory: dict[str, int] | None, progress=None) -> tuple[list[Candidate], list[Candidate]]:
    """(all evaluated candidates with any capacity, the non-dominated ones for the MILP).
    `progress(done, total)` is called after each (GPU, parallel config) when given."""
    evaluated = []
    work = []
    for gpu in sorted(gpus, key=lambda g: g.name):
        limit = min(space.max_gpus_per_instance, (inventory or {}).get(gpu.name, space.max_gpus_per_instance))
        work += [(gpu, par) for par in parallel_configs(space.model, gpu.scaleup_domain_gpus, limit,
                                                          space.allow_cross_node_tp, space.dtype)]
    longest = max(c.isl + c.osl for c in classes)
    for done, (gpu, par) in enumerate(work, start=1):
        if progress:
            progress(done, len(work))
        skew = (space.expert_skew or {}).get(par.ep, 1.0)
        base = Setup(space.model, gpu, par, space.engine.for_gpu(gpu), space.dtype, space.kv_dtype, 0, skew,
                     kv_compression=space.kv_compression)
        if not base.memory(longest).fits:
            continue
        for role in ROLES[space.mode]:
            for chunk in CHUNK_CHOICES if role == "agg" else (PREFILL_BUDGET_TOKENS,):
                setup = replace(base, chunk_tokens=chunk)
                spec_k = None
                if space.spec is not None and role in ("agg", "decode"):
                    caps, spec_k, setup = best_spec_depth(setup, role, classes, space, gpu.scaleup_domain_gpus)
                else:
                    caps = {c.name: role_capacity(setup, role, c, space.link_gbps) for c in classes}
                if any(cap.rate_rps > 0 for cap in caps.values()):
                    evaluated.append(Candidate(gpu.name, par, role, chunk, gpu.cost_usd_per_h * par.gpus, caps,
                                               setup.memory(longest).max_batch, skew, spec_k=spec_k))
        if space.mode == "multiplex":  # intra-GPU P/D: prefill on a share f of the SMs, decode on the rest
            from planner.multiplex import SM_FRACTIONS, multiplex_capacity

            setup = replace(base, chunk_tokens=PREFILL_BUDGET_TOKENS)
            for frac in SM_FRACTIONS:
                caps = {c.name: multiplex_capacity(setup, frac, c, space.link_gbps) for c in classes}
                if any(cap.rate_rps > 0 for cap in caps.values()):
                    evaluated.append(Candidate(gpu.name, par, "multiplex", PREFILL_BUDGET_TOKENS,
                                               gpu.cost_usd_per_h * par.gpus, caps, setup.memory(longest).max_batch,
                                               skew, sm_fraction=frac))
    return evaluated, prune(evaluated)
