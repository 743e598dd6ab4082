"""Enumerate instance types — (GPU, parallel config, role, chunk) — with their SLO capacity per request class,
and drop the dominated ones before the MILP sees them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from planner.capacity.estimate import Setup
from planner.capacity.serving import Capacity, role_capacity
from planner.core.errors import InfeasibleError
from planner.core.parallel import ParallelConfig, parallel_configs
from planner.core.vocab import Mode, Role
from planner.core.workload import RequestClass
from planner.instance import InstanceBuilder

ROLES = {Mode.agg: (Role.agg,), Mode.disagg: (Role.prefill, Role.decode),
         Mode.auto: (Role.agg, Role.prefill, Role.decode),
         Mode.multiplex: (Role.agg, Role.prefill, Role.decode)}  # + multiplex instance types (one per SM fraction), below
CHUNK_CHOICES = (2048, 4096, 8192, 16384)  # chunked-prefill token budgets searched for collocated instances
PREFILL_BUDGET_TOKENS = 16384  # batch budget of a dedicated prefill instance


@dataclass(frozen=True)
class Candidate:
    setup: Setup = field(repr=False)  # the configured instance (planner/instance.py)
    role: Role
    capacity: dict[str, Capacity]  # request class -> SLO capacity of one instance
    max_batch: int
    sm_fraction: float = 0.0  # multiplex role: prefill's share of the SMs (planner/levers/multiplex.py); else 0
    spec_k: int | None = None  # with --spec: draft tokens per verify step chosen (0 = off); None without --spec

    @property
    def gpu(self) -> str:
        return self.setup.gpu.name

    @property
    def par(self) -> ParallelConfig:
        return self.setup.par

    @property
    def chunk_tokens(self) -> int:
        return self.setup.chunk_tokens

    @property
    def skew(self) -> float:
        return self.setup.skew  # MoE expert-placement imbalance used

    @property
    def cost_usd_per_h(self) -> float:
        return self.setup.gpu.cost_usd_per_h * self.par.gpus

    @property
    def name(self) -> str:
        return f"{self.gpu}/{self.role}/{self.par.label()}" + (f"/c{self.chunk_tokens}" if self.role == Role.agg else "") \
            + (f"/f{self.sm_fraction:g}" if self.role == Role.multiplex else "")

    @property
    def gpus(self) -> int:
        return self.par.gpus


@dataclass(frozen=True)
class SearchSpace:
    builder: InstanceBuilder  # model, engine, dtypes and levers of every instance
    mode: Mode = Mode.auto
    max_gpus_per_instance: int = 64
    allow_cross_node_tp: bool = False
    expert_skew: dict[int, float] | None = None  # gpu-independent: ep -> placement imbalance (solvers.experts)


def best_spec_depth(space: SearchSpace, gpu: str, par: ParallelConfig, chunk: int, skew: float, role: Role,
                    classes: list[RequestClass]) -> tuple[dict[str, Capacity], int, Setup]:
    """Speculation depth k ∈ {0, …, k_max} (0 = off) giving this instance type the most capacity — summed over
    the classes, each relative to its best k — the smallest k on ties: (capacities, k, instance with it)."""
    spec = space.builder.levers.spec
    assert spec is not None, "speculation depth searched without --spec"
    tried = []
    for k in range(spec.k_max + 1):
        s = space.builder.build(gpu, par, chunk, skew, spec_k=k)
        tried.append((k, s, {c.name: role_capacity(s, role, c) for c in classes}))
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
    """(all evaluated candidates with any capacity, the non-dominated ones for the MILP). `gpus`: the fleet's
    GPU types as the builder configured them. `progress(done, total)` is called after each (GPU, parallel
    config) when given."""
    builder = space.builder
    evaluated = []
    work = []
    for gpu in sorted(gpus, key=lambda g: g.name):
        limit = min(space.max_gpus_per_instance, (inventory or {}).get(gpu.name, space.max_gpus_per_instance))
        work += [(gpu, par) for par in parallel_configs(builder.model, gpu.scaleup_domain_gpus, limit,
                                                          space.allow_cross_node_tp, builder.dtype)]
    longest = max(c.isl + c.osl for c in classes)
    for done, (gpu, par) in enumerate(work, start=1):
        if progress:
            progress(done, len(work))
        skew = (space.expert_skew or {}).get(par.ep, 1.0)
        if not builder.build(gpu.name, par, 0, skew).memory(longest).fits:
            continue
        for role in ROLES[space.mode]:
            for chunk in CHUNK_CHOICES if role == Role.agg else (PREFILL_BUDGET_TOKENS,):
                spec_k = None
                if builder.levers.spec is not None and role in (Role.agg, Role.decode):
                    caps, spec_k, setup = best_spec_depth(space, gpu.name, par, chunk, skew, role, classes)
                else:
                    setup = builder.build(gpu.name, par, chunk, skew)
                    caps = {c.name: role_capacity(setup, role, c) for c in classes}
                if any(cap.rate_rps > 0 for cap in caps.values()):
                    evaluated.append(Candidate(setup, role, caps, setup.memory(longest).max_batch, spec_k=spec_k))
        if space.mode == Mode.multiplex:  # intra-GPU P/D: prefill on a share f of the SMs, decode on the rest
            from planner.levers.multiplex import SM_FRACTIONS, multiplex_capacity

            setup = builder.build(gpu.name, par, PREFILL_BUDGET_TOKENS, skew)
            for frac in SM_FRACTIONS:
                caps = {c.name: multiplex_capacity(setup, frac, c) for c in classes}
                if any(cap.rate_rps > 0 for cap in caps.values()):
                    evaluated.append(Candidate(setup, Role.multiplex, caps, setup.memory(longest).max_batch,
                                               sm_fraction=frac))
    return evaluated, prune(evaluated)


def no_candidate_reason(space: SearchSpace, gpus: list, classes: list[RequestClass],
                        inventory: dict[str, int] | None) -> InfeasibleError:
    """Why no instance type meets the SLOs: memory, or an SLO below the best single-request latency."""
    from planner.capacity.estimate import require_fit
    from planner.capacity.serving import collocated_state

    builder, most = space.builder, space.max_gpus_per_instance
    fits = []
    for gpu in gpus:
        limit = min(most, (inventory or {}).get(gpu.name, most))
        for par in parallel_configs(builder.model, gpu.scaleup_domain_gpus, limit, dtype=builder.dtype):
            setup = builder.build(gpu.name, par)
            try:
                require_fit(setup, max(c.isl for c in classes), max(c.osl for c in classes))
            except InfeasibleError:
                continue
            fits.append(setup)
    if not fits:
        sizes = ", ".join(f"{g.name} ≤{min(most, (inventory or {}).get(g.name, 64))}" for g in gpus)
        return InfeasibleError(f"{builder.model.name} ({builder.dtype}) fits on no instance the fleet allows "
                               f"({sizes} GPUs)", binding="memory", hint="add GPUs, use larger-memory GPUs, or --dtype fp8")
    # lowest achievable TPOT / TTFT of any fitting config at (near) zero load, per class
    cls = classes[0]
    best = min(fits, key=lambda s: collocated_state(replace(s, chunk_tokens=max(cls.isl, 2048)), cls, 1e-9).tpot_s)
    st = collocated_state(replace(best, chunk_tokens=max(cls.isl, 2048)), cls, 1e-9)
    if st.tpot_s * 1e3 > cls.slo.tpot_ms:
        return InfeasibleError(f"TPOT {cls.slo.tpot_ms:g} ms is below the {st.tpot_s * 1e3:.1f} ms floor of any config "
                               f"on {', '.join(g.name for g in gpus)}; fastest is {best.gpu.name} "
                               f"{best.par.label()}", binding="tpot_slo",
                               hint=f"relax --slo tpot to ≥ {st.tpot_s * 1e3 * 1.05:.1f}ms or use faster GPUs")
    return InfeasibleError(f"TTFT {cls.slo.ttft_ms:g} ms is below the {st.ttft_s * 1e3:.0f} ms floor of any config "
                           f"(prompt of {cls.isl} tokens); fastest is {best.gpu.name} {best.par.label()}",
                           binding="ttft_slo", hint=f"relax --slo ttft to ≥ {st.ttft_s * 1.1:.2f}s or shorten prompts")
