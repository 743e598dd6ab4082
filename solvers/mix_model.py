"""The fleet-mix MILP: every variable and constraint of the model is defined here, in ``build``.

Indices: instance types i (sorted by name), request classes s with demand r_s > 0 (sorted by name),
GPU types g. cap[i,s] is the req/s one instance of i sustains for class s alone.

Variables
- x_i ∈ ℤ, min_count_i ≤ x_i ≤ U_i: instances of type i (U_i: see ``_upper_bounds``).
- y[i,s] ≥ 0, only where cap[i,s] > 0: req/s of class s routed to type i.
- α ≥ 0: the served fraction of the demand; fixed to 1 for the cost objective.

Constraints (row families)
- load[i]     Σ_s y[i,s] / cap[i,s] ≤ x_i. Mélange's load-fraction form: the instances of a type split
              their time between classes, each class using 1/cap of an instance per req/s.
- prefill[s]  Σ_{i prefill-capable} y[i,s] = α·r_s  and  decode[s]  Σ_{i decode-capable} y[i,s] = α·r_s:
              every request is prefilled once and decoded once. A collocated type's y[i,s] appears in
              both rows (it does both halves of the requests routed to it).
- kv[i]       prefill-only types with finite kv_egress: Σ_s kv_bytes_s · y[i,s] ≤ kv_egress_i · x_i, the
              KV-cache each prefill instance ships to the decode pool (row divided by kv_egress_i).
- kv_link     (only with ``kv_link_bytes_per_s`` L) Σ_{i prefill-only} Σ_s kv_bytes_s · y[i,s] ≤ L: one
              link between the prefill and the decode pool carries all of it (pools in different places).
- inventory[g]  Σ_i gpus[i,g] · x_i ≤ inventory[g]; a type whose GPU type the inventory does not list
              gets no column at all.
- budget      Σ_i cost_i · x_i ≤ budget.
- one_gpu     binaries z_g, Σ_g z_g ≤ 1 and x_i ≤ U_i · z_g for every GPU type g of i: the affected
              types all run on one GPU type. Affected are prefill-only and decode-only types when
              ``same_gpu_for_pd`` is set, every type for the "single_gpu_type" family.
- top-k cuts  (only when ``ModelSpec.cuts`` is non-empty) binaries u_i = [x_i ≥ 1] for types with
              min_count 0, via x_i ≤ U_i·u_i and u_i ≤ x_i; a used type must carry at least
              ``USED_LOAD`` of one instance (Σ_s y[i,s]/cap[i,s] ≥ USED_LOAD·u_i) so that an idle
              instance cannot make a plan new; and for each earlier plan with used set S, the no-good cut
              Σ_{i∉S} u_i + Σ_{i∈S} (1 − u_i) ≥ 1: the plan must use a different set of types.

Objectives (all minimised; ``MixModel.objectives``): "alpha" = −α, "cost" = Σ cost_i·x_i, "gpus" =
Σ GPUs_i·x_i, "order" = Σ position_i·x_i with position_i the 1-based place of i's name in sorted order
(the canonical tie-break that prefers types whose names sort first), and "gpus:<g>" = GPUs of type g.

Relaxations (``ModelSpec.relax``) drop one family of limits, to explain infeasibility or find the
constraint that binds: "budget", "inventory:<g>" (GPU type g becomes unlimited), "max_count",
"same_gpu_for_pd".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .backends import MilpModel
from .mix_problem import InstanceType, MixProblem, RequestClass

USED_LOAD = 1e-3  # least load (fraction of one instance) of a type that counts as used in top-k cuts


class UnboundedGoodput(Exception):
    """Nothing limits α: no inventory, budget or max_alpha bounds the instances that serve every class."""


@dataclass(frozen=True)
class ModelSpec:
    """Which variant of a MixProblem to build."""

    type_names: frozenset[str] | None = None  # restrict to these instance types (None: all)
    single_gpu_type: bool = False  # every instance on one GPU type
    relax: frozenset[str] = frozenset()  # limit families left out, see the module docstring
    cuts: tuple[frozenset[str], ...] = ()  # used-type sets of earlier plans (top-k no-good cuts)
    alpha: float | None = None  # fixed α; None = a variable (goodput objective)


@dataclass
class MixModel:
    """A built model and where each quantity lives in it."""

    milp: MilpModel
    x: dict[str, int]  # type name -> column of x_i
    y: dict[tuple[str, str], int]  # (type name, class name) -> column of y[i,s]
    alpha: int  # column of α
    rates: dict[str, float]  # class name -> demand r_s (classes with r_s > 0)
    objectives: dict[str, dict[int, float]]  # objective name -> {column: coefficient}, all minimised


def limit_families(problem: MixProblem, spec: ModelSpec) -> tuple[str, ...]:
    """The relaxable limit families present for this variant, in canonical order."""
    types = _spec_types(problem, spec)
    families = ["budget"] if problem.budget_usd_per_h is not None else []
    if problem.inventory is not None:
        families += [f"inventory:{g}" for g in sorted({g for t in types for g in t.gpus})]
    if any(t.max_count is not None for t in types):
        families.append("max_count")
    if problem.same_gpu_for_pd and not spec.single_gpu_type:
        families.append("same_gpu_for_pd")
    return tuple(families)


def build(problem: MixProblem, spec: ModelSpec) -> MixModel:
    """Build the MILP for ``problem`` (validated) as varied by ``spec``; see the module docstring."""
    classes = tuple(sorted((c for c in problem.classes if c.rate_rps > 0), key=lambda c: c.name))
    alpha_ub = _alpha_upper_bound(problem, spec, classes)
    upper = {t.name: max(t.min_count, bound) for t, bound in _upper_bounds(problem, spec, classes, alpha_ub)}
    types = tuple(t for t in _spec_types(problem, spec) if upper[t.name] > 0)
    position = {name: k + 1 for k, name in enumerate(sorted(t.name for t in problem.instance_types))}
    milp = MilpModel()

    x = {t.name: milp.add_var(t.min_count, upper[t.name], integer=True) for t in types}
    y = {
        (t.name, c.name): milp.add_var(0.0, math.inf)
        for t in types
        for c in classes
        if t.capacity_rps.get(c.name, 0.0) > 0
    }
    alpha = milp.add_var(alpha_ub if spec.alpha is not None else 0.0, alpha_ub)

    def load_terms(t: InstanceType) -> list[tuple[int, float]]:
        return [(y[t.name, c.name], 1.0 / t.capacity_rps[c.name]) for c in classes if (t.name, c.name) in y]

    for t in types:  # load[i]
        milp.add_row(load_terms(t) + [(x[t.name], -1.0)], -math.inf, 0.0)
    for c in classes:  # prefill[s], decode[s]
        for role in ("prefill", "decode"):
            serving = [(y[t.name, c.name], 1.0) for t in types if role in t.roles and (t.name, c.name) in y]
            milp.add_row(serving + [(alpha, -c.rate_rps)], 0.0, 0.0)
    for t in types:  # kv[i]
        if t.roles == {"prefill"} and math.isfinite(t.kv_egress_bytes_per_s):
            shipped = [
                (y[t.name, c.name], c.kv_bytes_per_request / t.kv_egress_bytes_per_s)
                for c in classes
                if (t.name, c.name) in y and c.kv_bytes_per_request > 0
            ]
            if shipped:
                milp.add_row(shipped + [(x[t.name], -1.0)], -math.inf, 0.0)
    if problem.kv_link_bytes_per_s is not None:  # kv_link (row divided by L)
        link = [(y[t.name, c.name], c.kv_bytes_per_request / problem.kv_link_bytes_per_s)
                for t in types if t.roles == {"prefill"} for c in classes
                if (t.name, c.name) in y and c.kv_bytes_per_request > 0]
        if link:
            milp.add_row(link, -math.inf, 1.0)
    if problem.inventory is not None:  # inventory[g]
        for g in sorted({g for t in types for g in t.gpus}):
            if f"inventory:{g}" not in spec.relax:
                users = [(x[t.name], float(t.gpus[g])) for t in types if g in t.gpus]
                milp.add_row(users, -math.inf, problem.inventory.get(g, 0))
    if problem.budget_usd_per_h is not None and "budget" not in spec.relax:  # budget
        milp.add_row([(x[t.name], t.cost_usd_per_h) for t in types], -math.inf, problem.budget_usd_per_h)
    if spec.single_gpu_type:  # one_gpu
        _one_gpu_type(milp, types, x, upper)
    elif problem.same_gpu_for_pd and "same_gpu_for_pd" not in spec.relax:
        _one_gpu_type(milp, [t for t in types if not t.collocated], x, upper)

    if spec.cuts:  # top-k cuts
        used = {t.name: milp.add_var(0.0, 1.0, integer=True) for t in types if t.min_count == 0}
        for t in types:
            if t.name in used:
                u = used[t.name]
                milp.add_row([(x[t.name], 1.0), (u, -float(upper[t.name]))], -math.inf, 0.0)
                milp.add_row([(u, 1.0), (x[t.name], -1.0)], -math.inf, 0.0)
                milp.add_row(load_terms(t) + [(u, -USED_LOAD)], 0.0, math.inf)
        for earlier in spec.cuts:
            terms = [(u, -1.0 if name in earlier else 1.0) for name, u in used.items()]
            milp.add_row(terms, 1.0 - sum(name in earlier for name in used), math.inf)

    gpu_types = sorted({g for t in types for g in t.gpus})
    objectives = {
        "alpha": {alpha: -1.0},
        "cost": {x[t.name]: t.cost_usd_per_h for t in types},
        "gpus": {x[t.name]: float(t.total_gpus) for t in types},
        "order": {x[t.name]: float(position[t.name]) for t in types},
    }
    for g in gpu_types:
        objectives[f"gpus:{g}"] = {x[t.name]: float(t.gpus[g]) for t in types if g in t.gpus}
    return MixModel(milp, x, y, alpha, {c.name: c.rate_rps for c in classes}, objectives)


def _spec_types(problem: MixProblem, spec: ModelSpec) -> list[InstanceType]:
    """The variant's instance types, sorted by name, less the dominated ones."""
    types = [t for t in problem.instance_types if spec.type_names is None or t.name in spec.type_names]
    demanded = [c.name for c in problem.classes if c.rate_rps > 0]
    return sorted(_undominated(types, demanded), key=lambda t: t.name)


def _undominated(types: list[InstanceType], classes: list[str]) -> list[InstanceType]:
    """Drop every type B that some type A dominates: same GPUs, roles and family; (cost, name) of A
    before B's; A's capacity at least B's for every demanded class and its KV egress at least B's; A has
    no max_count and B no min_count. Swapping B's instances for A's breaks no constraint and improves
    the lexicographic objective, so no optimal plan uses B; top-k plans never use B either."""
    groups: dict[tuple[tuple[tuple[str, int], ...], frozenset[str], str], list[InstanceType]] = {}
    for t in sorted(types, key=lambda t: (t.cost_usd_per_h, t.name)):
        groups.setdefault((tuple(sorted(t.gpus.items())), t.roles, t.family), []).append(t)
    kept = []
    for members in groups.values():
        leaders: list[InstanceType] = []
        for b in members:
            if b.min_count == 0 and any(_covers(a, b, classes) for a in leaders):
                continue
            kept.append(b)
            if b.max_count is None:
                leaders.append(b)
    return kept


def _covers(a: InstanceType, b: InstanceType, classes: list[str]) -> bool:
    return a.kv_egress_bytes_per_s >= b.kv_egress_bytes_per_s and all(
        a.capacity_rps.get(c, 0.0) >= b.capacity_rps.get(c, 0.0) for c in classes
    )


def _one_gpu_type(milp: MilpModel, types: Sequence[InstanceType], x: dict[str, int],
                  upper: dict[str, float]) -> None:
    gpu_types = sorted({g for t in types for g in t.gpus})
    chosen = {g: milp.add_var(0.0, 1.0, integer=True) for g in gpu_types}
    milp.add_row([(z, 1.0) for z in chosen.values()], -math.inf, 1.0)
    for t in types:
        for g in sorted(t.gpus):
            milp.add_row([(x[t.name], 1.0), (chosen[g], -float(upper[t.name]))], -math.inf, 0.0)


def _resource_bound(problem: MixProblem, spec: ModelSpec, t: InstanceType) -> float:
    """Most instances of ``t`` that its max_count, the inventory and the budget allow (inf if none)."""
    bound = math.inf
    if t.max_count is not None and "max_count" not in spec.relax:
        bound = t.max_count
    if problem.inventory is not None:
        for g, n in sorted(t.gpus.items()):
            if f"inventory:{g}" not in spec.relax:
                bound = min(bound, problem.inventory.get(g, 0) // n)
    budget = problem.budget_usd_per_h
    if budget is not None and "budget" not in spec.relax and t.cost_usd_per_h > 0:
        bound = min(bound, math.floor(budget / t.cost_usd_per_h + 1e-9))
    return bound


def _alpha_upper_bound(problem: MixProblem, spec: ModelSpec, classes: tuple[RequestClass, ...]) -> float:
    """A finite bound on α: the fixed α, else max_alpha and what the most instances allowed can serve.

    Raises UnboundedGoodput when every class can be served by instances nothing limits.
    """
    if spec.alpha is not None:
        return spec.alpha
    bound = problem.max_alpha if problem.max_alpha is not None else math.inf
    types = _spec_types(problem, spec)
    most = {t.name: _resource_bound(problem, spec, t) for t in types}
    for c in classes:
        for role in ("prefill", "decode"):
            served = sum(
                most[t.name] * t.capacity_rps.get(c.name, 0.0)
                for t in types
                if role in t.roles and t.capacity_rps.get(c.name, 0.0) > 0
            )
            bound = min(bound, served / c.rate_rps)
    if math.isinf(bound):
        raise UnboundedGoodput
    return bound


def _upper_bounds(problem: MixProblem, spec: ModelSpec, classes: tuple[RequestClass, ...],
                  alpha_ub: float) -> list[tuple[InstanceType, float]]:
    """(type, U_i): the resource bound, tightened by the demand bound (a whole number: the demand bound is finite).

    Demand bound: at α ≤ alpha_ub, type i never needs more than max(min_count, ⌈α·Σ_s r_s/cap[i,s]⌉,
    ⌈α·Σ_s r_s·kv_s/kv_egress_i⌉) instances; any plan with more can drop the surplus without breaking a
    constraint (nor changing which types it uses), which lowers its cost or GPU count, so no plan the
    solver returns is cut off. It also keeps the big-M coefficients of the binaries finite.
    """
    bounds = []
    for t in _spec_types(problem, spec):
        load = sum(c.rate_rps / t.capacity_rps[c.name] for c in classes if t.capacity_rps.get(c.name, 0.0) > 0)
        shipped = 0.0
        if t.roles == {"prefill"} and math.isfinite(t.kv_egress_bytes_per_s):
            shipped = sum(
                c.rate_rps * c.kv_bytes_per_request for c in classes if t.capacity_rps.get(c.name, 0.0) > 0
            ) / t.kv_egress_bytes_per_s
        needed = max(t.min_count, math.ceil(alpha_ub * max(load, shipped) * (1 + 1e-9)))
        bounds.append((t, min(_resource_bound(problem, spec, t), needed)))
    return bounds
