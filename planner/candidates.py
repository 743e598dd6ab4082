"""Enumerate instance types — (GPU, parallel config, role, chunk) — with their SLO capacity per request class,
and drop the dominated ones before the MILP sees them."""

from __future__ import annotations

from dataclasses import dataclass, replace

from planner.estimate import Setup
from planner.model import ModelSpec
from planner.parallel import ParallelConfig, parallel_configs
from planner.serving import Capacity, collocated_capacity, decode_capacity, prefill_capacity
from planner.workload import RequestClass

ROLES = {"agg": ("agg",), "disagg": ("prefill", "decode"), "auto": ("agg", "prefill", "decode")}
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

    @property
    def name(self) -> str:
        return f"{self.gpu}/{self.role}/{self.par.label()}" + (f"/c{self.chunk_tokens}" if self.role == "agg" else "")

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


def role_capacity(setup: Setup, role: str, cls: RequestClass, link_gbps: float | None) -> Capacity:
    if role == "prefill":
        return prefill_capacity(setup, cls.isl, cls.slo, link_gbps)
    if role == "decode":
        return decode_capacity(setup, cls.isl, cls.osl, cls.slo)
    return collocated_capacity(setup, cls.isl, cls.osl, cls.slo)


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
                                                          space.allow_cross_node_tp)]
    longest = max(c.isl + c.osl for c in classes)
    for done, (gpu, par) in enumerate(work, start=1):
        if progress:
            progress(done, len(work))
        skew = (space.expert_skew or {}).get(par.ep, 1.0)
        base = Setup(space.model, gpu, par, space.engine.for_gpu(gpu), space.dtype, space.kv_dtype, 0, skew)
        if not base.memory(longest).fits:
            continue
        for role in ROLES[space.mode]:
            for chunk in CHUNK_CHOICES if role == "agg" else (PREFILL_BUDGET_TOKENS,):
                setup = replace(base, chunk_tokens=chunk)
                caps = {c.name: role_capacity(setup, role, c, space.link_gbps) for c in classes}
                if any(cap.rate_rps > 0 for cap in caps.values()):
                    evaluated.append(Candidate(gpu.name, par, role, chunk, gpu.cost_usd_per_h * par.gpus, caps,
                                               setup.memory(longest).max_batch, skew))
    return evaluated, prune(evaluated)
