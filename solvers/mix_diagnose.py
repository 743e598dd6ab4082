"""Which limit binds: the ``binding`` and ``hint`` of a MixSolution.

Limit families are "budget", "inventory:<gpu>", "max_count" and "same_gpu_for_pd" (``limit_families``),
plus "max_alpha" (goodput at its cap), "kv_link" (the P -> D link is full; reported for a solved plan, never
relaxed) and "capacity" (no number of instances can serve the demand).

- Solved plan (``explain_optimum``, no extra solve): the limits the plan exhausts, i.e. that are tight
  in the integer sense: the unspent budget cannot pay for one more instance of any type; the unused
  GPUs of a type the inventory lists cannot host one more instance of any type that uses them; a type
  sits at its max_count; α sits at max_alpha. Joined by ",". None when the plan exhausts no limit
  (goodput is then held back by the whole-instance granularity of the mix rather than by one limit).
- No plan (``explain_infeasible``, by relaxation: solve again with limit families left out): the
  families whose relaxation alone makes the demand servable, each with what it would take ("budget must
  be at least $98.40/h", "needs 4 more h100_sxm GPUs"), joined by "," (any one suffices); if no single
  family does, the families the cheapest fully relaxed plan violates, joined by "+" (needed together);
  "capacity" if even that fails. The cost objective asks this of the full demand; goodput (which has no
  plan when it can serve nothing) asks it of a sliver of the demand (α = ``PROBE_ALPHA``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from .mix_model import ModelSpec, limit_families
from .mix_problem import MixProblem
from .mix_solve import SOLVED, Plan

PROBE_ALPHA = 1e-3  # "any demand": a 0.1% sliver (far above the solvers' feasibility tolerances)
EXHAUSTED_TOL = 1e-9  # relative slack below which a limit counts as reached

# solve(spec, objective name) -> the primary-stage plan of that variant (α is fixed, so always bounded)
PrimarySolve = Callable[[ModelSpec, str], Plan]


def explain_infeasible(problem: MixProblem, spec: ModelSpec, solve: PrimarySolve) -> tuple[str | None, str]:
    """(binding, hint) for a variant with no plan; binding is None if the diagnosis ran out of time."""
    goodput = problem.objective == "goodput"
    probe = replace(spec, alpha=PROBE_ALPHA if goodput else 1.0)
    prefix = "to serve even 0.1% of the demand, " if goodput else "to serve the full demand, "
    families = limit_families(problem, spec)
    loose = solve(replace(probe, relax=frozenset(families)), "cost")
    if loose.status == "time_limit":
        return None, "no plan found, and no time was left to find out why"
    if loose.status == "infeasible":
        return "capacity", _capacity_hint(problem, spec)
    fixes = []
    for family in families:
        relaxed = replace(probe, relax=frozenset({family}))
        plan = solve(relaxed, "cost")
        if plan.status in SOLVED:
            fixes.append((family, _needs(problem, relaxed, family, plan, solve)))
    if fixes:
        return ",".join(f for f, _ in fixes), prefix + " or ".join(text for _, text in fixes)
    violated = [(f, _violation(problem, f, loose)) for f in families]
    violated = [(f, text) for f, text in violated if text]
    return "+".join(f for f, _ in violated), prefix + " and ".join(text for _, text in violated)


def explain_optimum(problem: MixProblem, spec: ModelSpec, plan: Plan) -> tuple[str | None, str | None]:
    """(binding, hint) for a solved variant: the limits the plan exhausts (see the module docstring)."""
    types = {t.name: t for t in problem.instance_types if spec.type_names is None or t.name in spec.type_names}
    found: list[tuple[str, str]] = []
    if problem.objective == "goodput" and problem.max_alpha is not None:
        if plan.alpha >= problem.max_alpha * (1 - EXHAUSTED_TOL):
            found.append(("max_alpha", f"goodput is capped at max_alpha = {problem.max_alpha:g}"))
    if problem.budget_usd_per_h is not None:
        left = problem.budget_usd_per_h - sum(types[n].cost_usd_per_h * k for n, k in plan.counts.items())
        cheapest = min((t.cost_usd_per_h for t in types.values() if t.cost_usd_per_h > 0), default=math.inf)
        if left < cheapest * (1 - EXHAUSTED_TOL):
            text = f"${left:.2f}/h of the budget left, less than the cheapest instance (${cheapest:.2f}/h)"
            found.append(("budget", text))
    if problem.kv_link_bytes_per_s is not None:
        kv = {c.name: c.kv_bytes_per_request for c in problem.classes}
        shipped = sum(r * kv.get(c, 0.0) for (n, c), r in plan.routing.items()
                      if n in types and types[n].roles == {"prefill"})
        if shipped >= problem.kv_link_bytes_per_s * (1 - 1e-6):
            found.append(("kv_link", f"the prefill -> decode link carries {shipped / 1e9:.4g} of its "
                                     f"{problem.kv_link_bytes_per_s / 1e9:.4g} GB/s"))
    if problem.inventory is not None:
        for gpu in sorted({g for t in types.values() for g in t.gpus} & set(problem.inventory)):
            have = problem.inventory[gpu]
            used = sum(types[n].gpus.get(gpu, 0) * k for n, k in plan.counts.items())
            if have - used < min(t.gpus[gpu] for t in types.values() if gpu in t.gpus):
                found.append((f"inventory:{gpu}", f"{used} of {have} {gpu} GPUs in use"))
    capped = [n for n, k in plan.counts.items() if (most := types[n].max_count) is not None and k >= most]
    if capped:
        found.append(("max_count", f"at max_count: {', '.join(capped)}"))
    if not found:
        return None, None
    return ",".join(f for f, _ in found), "; ".join(text for _, text in found)


def _needs(problem: MixProblem, spec: ModelSpec, family: str, plan: Plan, solve: PrimarySolve) -> str:
    """What relaxing ``family`` alone takes: the excess of the cheapest plan that relaxation allows, or
    for an inventory, of the plan needing the fewest GPUs of that type."""
    if family.startswith("inventory:"):
        fewest = solve(spec, f"gpus:{family.split(':', 1)[1]}")
        plan = fewest if fewest.status in SOLVED else plan
    return _violation(problem, family, plan)


def _violation(problem: MixProblem, family: str, plan: Plan) -> str:
    """How ``plan`` (solved with ``family`` relaxed) exceeds that family's limit ("" if it does not)."""
    types = {t.name: t for t in problem.instance_types}
    if family == "budget":
        cost = sum(types[name].cost_usd_per_h * n for name, n in plan.counts.items())
        if problem.budget_usd_per_h is None or cost <= problem.budget_usd_per_h:  # None: no budget to exceed
            return ""
        return f"budget must be at least ${math.ceil(cost * 100 - 1e-6) / 100:.2f}/h"
    if family.startswith("inventory:"):
        gpu = family.split(":", 1)[1]
        used = sum(types[name].gpus.get(gpu, 0) * n for name, n in plan.counts.items())
        if problem.inventory is None:  # unlimited GPUs: nothing to exceed
            return ""
        have = problem.inventory.get(gpu, 0)
        return f"needs {used - have} more {gpu} GPUs ({used} instead of {have})" if used > have else ""
    if family == "max_count":
        over = [
            name
            for name, n in plan.counts.items()
            if (most := types[name].max_count) is not None and n > most
        ]
        return f"needs more instances than max_count allows of {', '.join(over)}" if over else ""
    split = {g for name in plan.counts if not types[name].collocated for g in types[name].gpus}
    return "needs prefill and decode on different GPU types (same_gpu_for_pd)" if len(split) > 1 else ""


def _capacity_hint(problem: MixProblem, spec: ModelSpec) -> str:
    """Why no number of instances can serve the demand."""
    types = [t for t in problem.instance_types if spec.type_names is None or t.name in spec.type_names]
    for c in sorted(problem.classes, key=lambda c: c.name):
        if c.rate_rps == 0:
            continue
        for role in ("prefill", "decode"):
            if not any(role in t.roles and t.capacity_rps.get(c.name, 0.0) > 0 for t in types):
                return f"class {c.name!r} has no {role}-capable instance type with capacity for it"
    if spec.single_gpu_type:
        return "no single GPU type has instance types that serve every class"
    return "the instance types cannot serve the demand"
