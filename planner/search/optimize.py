"""`planner optimize`: model + workload + SLOs + fleet -> ranked plans (docs/architecture.md, "Data flow").

candidates (roofline + SLO capacity per class) -> solvers.mix (MILP: counts + routing) -> Plans with the
latencies each instance shows at the load routed to it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING

from planner.capacity.serving import latency_at
from planner.core.errors import InfeasibleError, PlannerInputError
from planner.core.model import ModelSpec
from planner.core.parallel import parallel_configs
from planner.core.vocab import Family, Mode, Objective, Role
from planner.core.workload import RequestClass
from planner.instance import InstanceBuilder, Levers
from planner.search.candidates import Candidate, SearchSpace, enumerate_candidates, no_candidate_reason
from planner.search.plan import InstancePlan, Plan

if TYPE_CHECKING:
    from solvers import ExpertPlacement

# Fleets assumed when the user names none (said in the output): one 8-GPU H100 node to maximise goodput on;
# for a cost search, an unlimited choice of the common cloud GPUs.
DEFAULT_GOODPUT_FLEET = {"h100_sxm": 8}
DEFAULT_COST_GPUS = ("a100_80g", "h100_sxm", "h200_sxm", "b200_sxm", "l40s", "l4")
FAMILIES = (Family.agg, Family.disagg, Family.single_gpu_type)


@dataclass(frozen=True)
class Request:
    model: ModelSpec
    classes: tuple[RequestClass, ...]
    inventory: dict | None = None  # GPU type -> GPUs available; None -> default fleet
    budget_usd_per_h: float | None = None
    objective: Objective = Objective.goodput
    mode: Mode = Mode.auto  # multiplex: auto's instance types + intra-GPU P/D ones
    engine: str = "vllm"
    dtype: str = "bf16"
    kv_dtype: str = "bf16"
    top_k: int = 5
    backend: str = "highs"
    time_limit_s: float = 300.0  # --time-limit: the solvers' wall-clock safety stop (see SAFETY_NOTE)
    max_gpus_per_instance: int = 64
    expert_loads: tuple[float, ...] | None = None  # measured per-expert counts; None -> Zipf default
    levers: Levers = Levers()  # calibration, power caps, speculation, KV compression, P -> D link, --hwdb folders


def instance_builder(req: Request) -> InstanceBuilder:
    """The builder of every instance of this request's plans: candidates, plan latencies, energy, the report."""
    return InstanceBuilder(req.model, req.engine, req.dtype, req.kv_dtype, req.levers)


@dataclass
class Result:
    plans: list[Plan]
    family_bests: list[Plan]
    solver: dict
    candidates: list[Candidate]  # every evaluated instance type (for the Pareto chart)
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def _fleet(req: Request, builder: InstanceBuilder) -> tuple[list, dict | None, list[str]]:
    """The fleet's GPU types as every instance sees them (planner.instance), its inventory and notes."""
    from planner.levers.energy import power_cap_notes

    notes = []
    inventory = req.inventory
    if inventory is None:
        if req.objective in (Objective.cost, Objective.energy):
            names = list(DEFAULT_COST_GPUS)
            notes.append(f"no --gpus given: choosing freely among {', '.join(names)} (unlimited)")
        else:
            inventory = dict(DEFAULT_GOODPUT_FLEET)
            notes.append("no --gpus given: assuming one 8-GPU h100_sxm node")
    if inventory is not None:
        names = sorted(inventory)
    gpus = [builder.gpu(n) for n in names]
    if inventory is not None:  # canonical names (aliases resolved)
        inventory = {g.name: inventory[n] for g, n in zip(gpus, names)}
    return gpus, inventory, notes + power_cap_notes([g.name for g in gpus], req.levers.power_cap_w, req.levers.hwdb_dirs)


# Default routing skew when no expert statistics are given: Zipf exponent 0.5 over the experts (an assumption,
# not a measurement: trained routers with load-balancing losses are far flatter than s = 1).
ZIPF_S = 0.5
PLACEMENT_DETERMINISTIC_S = 0.5  # CP-SAT deterministic time per EP width (same result on every machine)
# The solvers stop at deterministic limits (MILP nodes, CP-SAT deterministic time), so the same input gives
# the same plan on any machine; the wall clock only stops them as a safety stop, and then the output says so.
SAFETY_NOTE = ("the solver's wall-clock safety stop ({}) cut a solve short, so this plan may differ from run to "
               "run; raise --time-limit or use a less loaded machine")


def expert_placements(model: ModelSpec, eps: set[int], loads: tuple[float, ...] | None) -> dict:
    """EP width -> the placement of the expert loads on that many ranks (solvers.experts); {} for dense."""
    if not model.is_moe:
        return {}
    from solvers import zipf_loads

    loads = loads or zipf_loads(model.num_experts, s=ZIPF_S, seed=0)
    return {ep: _placement(tuple(loads), ep, model.num_experts // ep) for ep in sorted(e for e in eps if e > 1)}


@lru_cache(maxsize=64)
def _placement(loads: tuple[float, ...], ep: int, slots_per_rank: int) -> ExpertPlacement:
    """One placement per (loads, EP width): CP-SAT stops at deterministic time, so a repeat is the same answer."""
    from solvers import ExpertProblem, place_experts

    return place_experts(ExpertProblem(loads, ep, slots_per_rank), time_limit_s=PLACEMENT_DETERMINISTIC_S, seed=0)


def expert_skew(model: ModelSpec, eps: set[int], loads: tuple[float, ...] | None) -> dict[int, float]:
    """Imbalance of the busiest EP rank after placing the expert loads with solvers.experts (≥ 1), per EP
    width; rounded to 3 decimals so plans do not depend on the last bits of the placement."""
    return {ep: round(p.imbalance, 3) for ep, p in expert_placements(model, eps, loads).items()}


def _instance(c: Candidate, count: int, load: dict[str, float], classes: dict[str, RequestClass]) -> InstancePlan:
    util = sum(r / (count * c.capacity[s].rate_rps) for s, r in load.items() if r > 0)
    ttft = tpot = 0.0
    for s, r in sorted(load.items()):
        if r <= 0:
            continue
        cls = classes[s]
        # an instance at load fraction u serves class s like class s alone at u · capacity_s
        if c.role == Role.multiplex:
            from planner.levers.multiplex import multiplex_latency

            a, b = multiplex_latency(c.setup, c.sm_fraction, cls, util * c.capacity[s].rate_rps)
        else:
            a, b = latency_at(c.setup, c.role, cls, util * c.capacity[s].rate_rps)
        ttft, tpot = max(ttft, a), max(tpot, b)
    bindings = sorted({c.capacity[s].binding for s, r in load.items() if r > 0})
    return InstancePlan(Role(c.role), c.gpu, count, c.par.tp, c.par.pp, c.par.ep, c.par.dp, c.max_batch, c.chunk_tokens,
                        {s: r for s, r in load.items() if r > 0}, util, ttft, tpot, ",".join(bindings), c.skew,
                        sm_fraction=c.sm_fraction, spec_k=c.spec_k)


def _plan(sol, rank: int, cands: dict[str, Candidate], req: Request) -> Plan:
    if req.objective == Objective.energy:  # the MILP's "cost" was watts: the plan's $/h from its instances
        sol = replace(sol, cost_usd_per_h=sum(n * cands[k].cost_usd_per_h for k, n in sol.counts.items()))
    classes = {c.name: c for c in req.classes}
    instances = []
    for name, count in sorted(sol.counts.items()):
        c = cands[name]
        load = {s: sol.routing.get((name, s), 0.0) for s in classes}
        instances.append(_instance(c, count, load, classes))
    instances.sort(key=lambda i: (list(Role).index(i.role), i.gpu, -i.count))
    served = {s: sum(sol.routing.get((n, s), 0.0) for n in sol.counts
                     if cands[n].role in (Role.agg, Role.prefill, Role.multiplex)) for s in classes}
    goodput = sum(served.values())
    tokens = sum(served[s] * classes[s].osl for s in classes)
    n_gpus = sum(sol.gpus.values())
    roles = {i.role for i in instances}
    mode = Mode.agg if roles == {Role.agg} else (Mode.disagg if Role.agg not in roles else "mixed")
    if Role.multiplex in roles:  # intra-GPU P/D (--mode multiplex)
        mode = Mode.multiplex if roles == {Role.multiplex} else "mixed"
    loaded = [i for i in instances if i.load_rps]
    predicted = {"ttft_ms": max((i.ttft_ms for i in loaded), default=0.0),
                 "tpot_ms": max((i.tpot_ms for i in loaded), default=0.0)}
    inst_bind = sorted({b for i in loaded for b in i.binding.split(",") if b})
    binding = _binding_text(sol, req) + (f"; each instance limited by {'/'.join(inst_bind)}" if inst_bind else "")
    usd_per_m = sol.cost_usd_per_h / (tokens * 3600) * 1e6 if tokens > 0 else 0.0
    plan = Plan(rank, sol.family, mode, goodput, tokens, tokens / n_gpus if n_gpus else 0.0, sol.cost_usd_per_h,
                usd_per_m, dict(sol.gpus), tuple(instances), predicted, binding)
    return _with_energy(plan, sol, cands, req)


def _with_energy(plan: Plan, sol, cands: dict[str, Candidate], req: Request) -> Plan:
    """The plan with its fleet power at the routed load and J per output token (planner/levers/energy.py)."""
    from planner.levers.energy import instance_watts, plan_energy

    classes = {c.name: c for c in req.classes}
    watts = 0.0
    for name, count in sorted(sol.counts.items()):
        c = cands[name]
        per_instance = {s: sol.routing.get((name, s), 0.0) / count for s in classes}
        caps = {s: cap.rate_rps for s, cap in c.capacity.items()}
        watts += count * instance_watts(c.setup, c.role, per_instance, classes, caps)
    return replace(plan, energy=plan_energy(watts, plan.tokens_per_s).to_json())


def _covers_every_class(cands: list[Candidate], classes) -> bool:
    """Each class needs some instance type that can prefill it and some that can decode it within its SLO."""
    def able(c, s, role):
        return c.capacity[s].rate_rps > 0 and c.role in (Role.agg, Role.multiplex, role)

    return all(any(able(c, k.name, Role.prefill) for c in cands) and any(able(c, k.name, Role.decode) for c in cands)
               for k in classes)


PROMPT_MIX_RATIO = 4.0  # classes whose prompt lengths differ more than this never share a prefill queue


def prompt_groups(classes) -> tuple[str, ...]:
    """Classes that may share a prefill-capable instance, as '+'-joined names, shortest prompts first.
    A long prompt ahead of short ones in one prefill queue blocks them (head-of-line): the per-class capacities
    the MILP adds up assume each class alone, which `planner simulate` showed to hold only while prompt lengths
    are alike (a 16k-token document class on a chat instance: 75 % instead of 90 % attainment). So a class joins
    the group of the previous one only while its ISL is within PROMPT_MIX_RATIO of the group's shortest."""
    groups: list[list] = []
    for c in sorted(classes, key=lambda c: (c.isl, c.name)):
        if groups and c.isl <= PROMPT_MIX_RATIO * groups[-1][0].isl:
            groups[-1].append(c)
        else:
            groups.append([c])
    return tuple("+".join(c.name for c in g) for g in groups)


def _binding_text(sol, req: Request) -> str:
    """The fleet-level limit in words: which solver constraint family holds the objective back."""
    parts = []
    for family in (sol.binding or "").replace("+", ",").split(","):
        if family.startswith("inventory:"):
            gpu = family.split(":", 1)[1]
            parts.append(f"inventory of {gpu}")
        elif family == "budget":
            parts.append(f"budget ${req.budget_usd_per_h:g}/h")
        elif family == "kv_link":
            parts.append(f"prefill -> decode link {req.levers.link_gbps:g} GB/s")
        elif family == "max_alpha":
            parts.append("demand fully served")
        elif family:
            parts.append(family)
    text = " + ".join(parts) or "none"
    if sol.hint and "inf" not in sol.hint and sol.binding != "max_alpha":
        text += f" ({sol.hint})"
    return text


def _watts_at_capacity(req: Request):
    """--objective energy: the MILP's cost objective (min Σ cost_i·x_i at the demand) with each instance type's
    power at its SLO capacity (planner.levers.energy.full_load_watts) in place of $/h. Charging every instance its
    full-load power makes the objective an upper estimate of the fleet's watts; instances the MILP buys run
    close to full load, and the plans report their watts at the routed load."""
    from planner.levers.energy import full_load_watts

    return lambda c: full_load_watts(c.setup, c.role, list(req.classes), c.capacity)


def optimize(req: Request, progress=None) -> Result:
    """`progress(stage, done, total)`, when given, hears how the search advances (the CLI draws a bar)."""
    from solvers import InstanceType, MixProblem, solve_mix
    from solvers import RequestClass as SolverClass

    t0 = time.perf_counter()
    if req.objective not in tuple(Objective):
        raise PlannerInputError(f"--objective: expected goodput, cost or energy, got '{req.objective}'")
    if req.objective == Objective.energy and any(c.rate_rps <= 0 for c in req.classes):
        raise PlannerInputError("--workload: rate is required for --objective energy (the demand to serve)")
    if req.objective == Objective.energy and req.budget_usd_per_h is not None:
        raise PlannerInputError("--budget: not supported with --objective energy (the MILP's cost row carries "
                                "watts there); compare with --objective cost instead")
    if req.mode not in tuple(Mode):
        raise PlannerInputError(f"--mode: expected auto, agg, disagg or multiplex, got '{req.mode}'")
    if req.objective == Objective.cost and any(c.rate_rps <= 0 for c in req.classes):
        raise PlannerInputError("--workload: rate is required for --objective cost (the demand to serve)")
    if req.levers.spec is not None:  # a draft that cannot serve this model is bad input, not an empty search
        from planner.levers.spec import check_config

        check_config(req.levers.spec, req.model)
    if req.levers.kv_compression < 1:
        raise PlannerInputError(f"--kv-compression: expected a ratio ≥ 1, got {req.levers.kv_compression:g}")
    if not (isinstance(req.time_limit_s, (int, float)) and math.isfinite(req.time_limit_s) and req.time_limit_s > 0):
        raise PlannerInputError(f"--time-limit: expected a finite number of seconds > 0, got {req.time_limit_s}")
    builder = instance_builder(req)
    gpus, inventory, notes = _fleet(req, builder)
    req = replace(req, inventory=inventory)  # canonical GPU names, default fleet resolved
    eps = {p.ep for g in gpus for p in parallel_configs(req.model, g.scaleup_domain_gpus,
                                                              req.max_gpus_per_instance, dtype=req.dtype)}
    placements = expert_placements(req.model, eps, req.expert_loads)
    if any(p.safety_stop for p in placements.values()):
        from solvers.experts import safety_stop_s

        notes.append(SAFETY_NOTE.format(f"{safety_stop_s(PLACEMENT_DETERMINISTIC_S):g} s per expert placement"))
    space = SearchSpace(builder, req.mode, req.max_gpus_per_instance,
                        expert_skew={ep: round(p.imbalance, 3) for ep, p in placements.items()})
    evaluated, cands = enumerate_candidates(
        space, gpus, list(req.classes), inventory,
        progress=(lambda d, t: progress("evaluating instance types", d, t)) if progress else None)
    if not _covers_every_class(cands, req.classes):
        raise no_candidate_reason(space, gpus, list(req.classes), inventory)
    groups = prompt_groups(req.classes)
    typed = [(c, "") for c in cands] if len(groups) == 1 else [
        (c, g) for c in cands for g in (groups if c.role != Role.decode else ("",))]
    by_name = {c.name + (f"@{g}" if g else ""): c for c, g in typed}
    # a prefill instance ships its KV over its GPUs' NICs (bytes/s), P -> D (--link adds kv_link_bytes_per_s)
    egress = lambda c: c.setup.gpu.scaleout_bw_gbps * 1e9 * c.gpus  # noqa: E731
    rate_of = _watts_at_capacity(req) if req.objective == Objective.energy else (lambda c: c.cost_usd_per_h)
    types = tuple(InstanceType(
        name=c.name + (f"@{g}" if g else ""), gpus={c.gpu: c.gpus}, cost_usd_per_h=rate_of(c),
        roles=frozenset({Role.prefill, Role.decode} if c.role in (Role.agg, Role.multiplex) else {c.role}),
        capacity_rps={s: cap.rate_rps for s, cap in sorted(c.capacity.items())
                      if cap.rate_rps > 0 and (not g or s in g.split("+"))},
        family=Family(c.role) if c.role in (Role.agg, Role.multiplex) else Family.disagg,
        kv_egress_bytes_per_s=egress(c) if c.role == Role.prefill else float("inf"))
        for c, g in typed)
    types = tuple(t for t in types if t.capacity_rps)
    demand_given = all(c.rate_rps > 0 for c in req.classes)
    classes = tuple(SolverClass(c.name, c.rate_rps if demand_given else 1.0,
                                req.model.kv_bytes_per_sequence(c.isl, req.kv_dtype) / req.levers.kv_compression)
                    for c in req.classes)
    problem = MixProblem(types, classes, inventory=inventory, budget_usd_per_h=req.budget_usd_per_h,
                         objective=Objective.cost if req.objective == Objective.energy else req.objective,
                         max_alpha=1.0 if demand_given and req.objective == Objective.goodput
                         else None, kv_link_bytes_per_s=req.levers.link_gbps * 1e9 if req.levers.link_gbps else None)
    families = FAMILIES if req.mode == Mode.auto else (FAMILIES + (Family.multiplex,) if req.mode == Mode.multiplex
                                                       else (Family.single_gpu_type,))
    if progress:
        progress("solving the fleet MILP", 0, 1)
    sols = solve_mix(problem, backend=req.backend, time_limit_s=req.time_limit_s, threads=1, top_k=req.top_k,
                     families=families)
    main = [s for s in sols if not s.family]
    if main and main[0].status == "time_limit" and main[0].safety_stop:
        raise PlannerInputError(f"--time-limit: no fleet plan found within {req.time_limit_s:g} s (the solver's "
                                f"wall-clock safety stop); raise it")
    if not main or main[0].status in ("infeasible", "time_limit"):
        first = main[0] if main else sols[0]
        raise InfeasibleError(f"no fleet plan serves the demand: {first.hint or 'infeasible'}",
                              binding=first.binding or ("solver_limit" if first.status == "time_limit" else "capacity"),
                              hint=first.hint or "")
    solved = ("optimal", "feasible")
    plans = [_plan(s, i + 1, by_name, req) for i, s in enumerate(main) if s.status in solved]
    bests = [_plan(s, 0, by_name, req) for s in sols if s.family and s.status in solved]
    if demand_given and req.objective == Objective.goodput and plans and plans[0].goodput_rps < 0.999 * sum(
            c.rate_rps for c in req.classes):
        notes.append(f"the fleet serves only {plans[0].goodput_rps:.3g} of the {sum(c.rate_rps for c in req.classes):g}"
                     f" req/s asked for within the SLOs")
    head = main[0]
    safety_stop = any(s.safety_stop for s in sols)
    if safety_stop:
        notes.append(SAFETY_NOTE.format(f"--time-limit {req.time_limit_s:g} s"))
    solver = {"backend": head.backend, "status": head.status, "gap": head.gap, "safety_stop": safety_stop,
              "time_s": sum(s.time_s for s in sols), "candidates": len(cands), "evaluated": len(evaluated)}
    return Result(plans, bests, solver, evaluated, notes, time.perf_counter() - t0)


def parse_sweep(text: str) -> list[float]:
    """'rate=1..100' (10 points) or 'rate=1..100:25' -> evenly spaced total request rates."""
    import re

    from planner.core.bounds import MAX_RATE_RPS, bounded

    m = re.fullmatch(r"\s*rate\s*=\s*([0-9]*\.?[0-9]+)\s*\.\.\s*([0-9]*\.?[0-9]+)\s*(?::\s*([0-9]+))?\s*", text)
    if not m:
        raise PlannerInputError(f"--sweep: expected rate=LOW..HIGH[:POINTS], got '{text}'")
    lo, hi, n = float(m.group(1)), float(m.group(2)), int(m.group(3) or 10)
    if not 0 < lo <= hi or not 1 <= n <= 200:
        raise PlannerInputError(f"--sweep: need 0 < LOW ≤ HIGH and 1..200 points, got '{text}'")
    bounded(hi, "--sweep: HIGH", 0, MAX_RATE_RPS, unit=" req/s")
    return [lo + (hi - lo) * i / max(n - 1, 1) for i in range(n)]


def sweep(req: Request, rates: list[float], progress=None) -> list[dict]:
    """The best plan at each total request rate (classes keep their mix): goodput and cost curves."""
    weights = [c.rate_rps or 1.0 for c in req.classes]
    total = sum(weights)
    rows = []
    for k, rate in enumerate(rates):
        if progress:
            progress("sweeping the request rate", k, len(rates))
        classes = tuple(replace(c, rate_rps=rate * w / total) for c, w in zip(req.classes, weights))
        try:
            best = optimize(replace(req, classes=classes, top_k=1)).plans[0]
            rows.append({"rate_rps": rate, "goodput_rps": best.goodput_rps, "cost_usd_per_h": best.cost_usd_per_h,
                         "usd_per_million_tokens": best.usd_per_million_tokens, "gpus": sum(best.gpus.values()),
                         "mode": best.mode, "status": "ok", "binding": best.binding})
        except InfeasibleError as e:
            rows.append({"rate_rps": rate, "goodput_rps": 0.0, "cost_usd_per_h": 0.0, "usd_per_million_tokens": 0.0,
                         "gpus": 0, "mode": "", "status": "infeasible", "binding": e.binding})
    return rows
