"""Fleet mix: which instances to run, how many, and where each request class goes (a MILP).

``solve_mix`` returns ranked plans: the best plan, up to ``top_k`` plans that each use a different set of
instance types (no-good cuts), then the best plan of each requested family. The model is in
``mix_model``, the lexicographic tie-breaks in ``mix_solve``, the binding-constraint analysis in
``mix_diagnose``.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import replace

from .backends import check_backend
from .errors import SolverInputError
from .mix_diagnose import explain_infeasible, explain_optimum
from .mix_model import ModelSpec, UnboundedGoodput, build
from .mix_problem import SINGLE_GPU_TYPE, InstanceType, MixProblem, MixSolution, RequestClass, validate
from .mix_solve import SOLVED, STAGES, Plan, solve_stages

__all__ = ["InstanceType", "RequestClass", "MixProblem", "MixSolution", "solve_mix"]

ALPHA_EPS = 1e-6  # a goodput plan serving at most this fraction of the demand serves nothing


def solve_mix(
    problem: MixProblem,
    *,
    backend: str = "highs",
    time_limit_s: float = 10.0,
    threads: int = 1,
    top_k: int = 1,
    families: tuple[str, ...] = (),
) -> list[MixSolution]:
    """Solve the fleet-mix MILP; return the top-k plans, then the best plan of each family.

    - Objective "goodput": maximise α, the served fraction of the demand, within inventory and budget;
      ties go to the cheaper plan, then the one with fewer GPUs, then the canonical type order.
      "cost": minimise $/h at α = 1; ties go to fewer GPUs, then the canonical type order.
    - Plan k+1 (k < ``top_k``) is the best plan whose set of used instance types differs from those of
      plans 1..k; the list is shorter when no such plan exists.
    - ``families``: for each label, the best plan using only the types whose ``family`` is that label;
      the label "single_gpu_type" means the best plan that runs on one GPU type.
    - Each solve stops at ``mix_solve.MAX_NODES`` branch-and-bound nodes, a deterministic limit (status
      "feasible" with a gap when it stops a stage); ``time_limit_s`` of wall time for the whole call is only
      a safety stop, and a result it cut short has ``safety_stop`` True. ``threads`` = 1 keeps the backend
      deterministic, so identical inputs give identical plans (all fields but ``time_s``) unless the safety
      stop fires.
    - A plan with no solution carries status "infeasible" (or "time_limit") with ``binding`` and ``hint``
      saying what limit to lift; a solved plan's ``binding`` names the limit that holds it back.

    Raises SolverInputError, naming the field, for invalid input or a goodput objective nothing bounds.
    """
    validate(problem)
    check_backend(backend)
    _validate_options(time_limit_s, threads, top_k, families)
    deadline = time.perf_counter() + time_limit_s
    solver = _Solver(problem, backend, threads, deadline, time_limit_s)
    base = ModelSpec(alpha=1.0 if problem.objective == "cost" else None)
    try:
        solutions = [solver.solution(base, "")]
    except UnboundedGoodput:
        raise SolverInputError(
            "objective: goodput is unbounded: give an inventory, a budget_usd_per_h or a max_alpha"
        ) from None
    while len(solutions) < top_k and solutions[-1].status in SOLVED:
        used = tuple(frozenset(s.counts) for s in solutions)
        following = solver.solution(replace(base, cuts=used), "")
        if following.status not in SOLVED:
            break
        solutions.append(following)
    for label in families:
        if label == SINGLE_GPU_TYPE:
            solutions.append(solver.solution(replace(base, single_gpu_type=True), label))
            continue
        names = frozenset(t.name for t in problem.instance_types if t.family == label)
        if names:
            solutions.append(solver.solution(replace(base, type_names=names), label))
        else:
            solutions.append(solver.empty(label, "capacity", f"no instance type has family {label!r}"))
    return solutions


class _Solver:
    """Solves variants of one problem with one backend, threads setting and deadline."""

    def __init__(self, problem: MixProblem, backend: str, threads: int, deadline: float, limit_s: float):
        self.problem, self.backend, self.threads = problem, backend, threads
        self.deadline, self.limit_s = deadline, limit_s

    def primary(self, spec: ModelSpec, stage: str) -> Plan:
        """The first-stage plan of a variant with a fixed α for objective ``stage``."""
        model = build(self.problem, spec)
        return solve_stages(model, (stage,), backend=self.backend, deadline=self.deadline, threads=self.threads)

    def solution(self, spec: ModelSpec, family: str) -> MixSolution:
        """The best plan of a variant with its binding constraint, or an explained failure."""
        began = time.perf_counter()
        plan = solve_stages(
            build(self.problem, spec),
            STAGES[self.problem.objective],
            backend=self.backend,
            deadline=self.deadline,
            threads=self.threads,
        )
        serves_nothing = self.problem.objective == "goodput" and plan.alpha <= ALPHA_EPS
        if plan.status in SOLVED and not serves_nothing:
            binding, hint = explain_optimum(self.problem, spec, plan)
            return self._from_plan(plan, binding, hint, family, time.perf_counter() - began)
        if plan.status == "time_limit":
            limit = f"the {self.limit_s:g} s time limit (safety stop)" if plan.safety_stop else "the node limit"
            hint = f"no plan found within {limit}"
            return self.empty(family, None, hint, "time_limit", time.perf_counter() - began, plan.safety_stop)
        binding, hint = explain_infeasible(self.problem, spec, self.primary)
        return self.empty(family, binding, hint, "infeasible", time.perf_counter() - began)

    def empty(
        self, family: str, binding: str | None, hint: str, status: str = "infeasible", time_s: float = 0.0,
        safety_stop: bool = False,
    ) -> MixSolution:
        """A MixSolution without a plan."""
        objective = 0.0 if self.problem.objective == "goodput" else math.inf
        return MixSolution(
            status, objective, 0.0, 0.0, {}, {}, {}, math.inf, time_s, self.backend, binding, hint, family,
            safety_stop,
        )

    def _from_plan(self, plan: Plan, binding: str | None, hint: str | None, family: str, time_s: float) -> MixSolution:
        types = {t.name: t for t in self.problem.instance_types}
        cost = sum(types[name].cost_usd_per_h * n for name, n in plan.counts.items())
        gpus: dict[str, int] = {}
        for name, n in plan.counts.items():
            for g, per in types[name].gpus.items():
                gpus[g] = gpus.get(g, 0) + per * n
        objective = plan.alpha if self.problem.objective == "goodput" else cost
        return MixSolution(
            plan.status, objective, plan.alpha, cost, dict(sorted(gpus.items())), plan.counts, plan.routing,
            plan.gap, time_s, self.backend, binding, hint, family, plan.safety_stop,
        )


def _validate_options(time_limit_s: float, threads: int, top_k: int, families: tuple[str, ...]) -> None:
    if not isinstance(time_limit_s, numbers.Real) or not math.isfinite(time_limit_s) or time_limit_s <= 0:
        raise SolverInputError(f"time_limit_s: must be a finite number > 0, got {time_limit_s!r}")
    for field, value in (("threads", threads), ("top_k", top_k)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise SolverInputError(f"{field}: must be an integer >= 1, got {value!r}")
    if isinstance(families, str) or not all(isinstance(f, str) and f for f in families):
        raise SolverInputError(f"families: must be a tuple of non-empty labels, got {families!r}")
