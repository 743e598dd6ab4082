"""Lexicographic solve of a built fleet-mix model: the primary objective, then the tie-breaks.

Each stage minimises one objective of ``MixModel.objectives``; before the next stage a row fixes the
stage's objective at its optimum (within ``TIE_TOL·(1 + |value|)``, so values closer than that count as
tied) and the previous solution is handed to the solver as a starting incumbent (``solve_milp`` checks
every answer and solves again without the start when the answer is wrong). A separate solve per
level, rather than an ε-weighted sum, is what makes a tie-break provably unable to change a
higher-priority objective, whatever the magnitudes of costs and counts.

Stage order: goodput = (α, $/h, GPUs then type order); cost = ($/h, GPUs then type order). "Type order"
is Σ position_i·x_i (see ``mix_model``). GPUs and type order share one stage, exactly: both are integers,
and a plan's type order is at most max position × its GPU count (every instance has a GPU), so with
W = 1 + max position × (GPUs of the stage's start) the objective W·GPUs + order ranks any plan with fewer
GPUs first and lets the order decide only among plans with equal GPUs (a plan with more GPUs than the
start cannot win). Plans still tied after that are rare; the backend breaks those ties the same way on
every run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from .backends import solve_milp
from .mix_model import MixModel

SOLVED = ("optimal", "feasible")  # statuses that come with a plan
GPUS_THEN_ORDER = "gpus, then order"
STAGES = {"goodput": ("alpha", "cost", GPUS_THEN_ORDER), "cost": ("cost", GPUS_THEN_ORDER)}
# Values within TIE_TOL·(1 + |value|) of a stage's optimum count as tied. It must exceed the backends' output
# precision, or the fixing row cuts off the optimum itself: pulp reads CBC's values with 8 significant
# digits (α = 12.387097 for 12.3870967...), so the next stage demanded more than any plan reaches. 1e-6 is
# 20x above that rounding (5e-8) and at the solvers' feasibility tolerance (1e-6), and far below the
# difference between two distinct plans' $/h or α for inputs given to a few digits.
TIE_TOL = 1e-6
# Branch-and-bound nodes per stage: the deterministic limit (same answer on every machine). The speed
# benchmark's hardest stage takes 579 nodes; 5,000 is about 10 s per stage for its largest models.
MAX_NODES = 5_000
ROUTE_TOL = 1e-6  # routes below this fraction of their class's demand are solver noise and are dropped


@dataclass(frozen=True)
class Plan:
    """A solved plan, before it becomes a MixSolution. ``counts``/``routing`` empty without a solution."""

    status: str  # "optimal" | "feasible" | "infeasible" | "time_limit"
    gap: float
    alpha: float
    counts: dict[str, int]
    routing: dict[tuple[str, str], float]
    primary: float  # the first stage's objective value (minimised: −α for "alpha")
    safety_stop: bool = False  # the wall-clock safety stop cut a stage short


def solve_stages(
    model: MixModel, stages: tuple[str, ...], *, backend: str, deadline: float, threads: int
) -> Plan:
    """Solve ``stages`` in order on ``model`` (which gains the fixing rows); ``deadline`` is the safety stop.

    Status "optimal" means every stage was proven optimal. A stage stopped by a limit makes the plan
    "feasible" (with the best solution found, or the previous stage's plan, which satisfies every later
    stage's rows) and ``gap`` that stage's relative gap; later stages still run. A tie-break stage without
    a plan is an error: the previous stage's plan satisfies it, so the backend has failed (RuntimeError).
    """
    values: tuple[float, ...] | None = None
    status, gap, primary, safety_stop = "time_limit", math.inf, math.inf, False
    for k, name in enumerate(stages):
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            safety_stop = True
            if status == "optimal":
                status, gap = "feasible", math.inf
            break
        objective = _objective(model, name, values)
        result = solve_milp(model.milp, objective, backend=backend, time_limit_s=remaining, max_nodes=MAX_NODES,
                            threads=threads, start=values)
        safety_stop = safety_stop or result.safety_stop
        if k == 0:
            status, gap = result.status, result.gap
        elif result.status == "infeasible":
            raise RuntimeError(f"{backend}: tie-break stage {name!r} found no plan, although the plan of the "
                               f"stage before satisfies it")
        elif result.status != "optimal" and status == "optimal":
            status, gap = "feasible", result.gap  # the first stage cut short gives the gap
        if result.values is not None:  # a stage stopped without a plan keeps the previous one
            values = result.values
        if values is None:  # the first stage found no plan
            break
        value = _value(model, objective, values)
        if k == 0:
            primary = value
        if k + 1 < len(stages):
            model.milp.add_row(list(objective.items()), -math.inf, value + TIE_TOL * (1 + abs(value)))
    if values is None:
        return Plan(status, math.inf, 0.0, {}, {}, math.inf, safety_stop)
    if stages[0] == "alpha" and len(stages) > 1:
        values, stopped = _alpha_at_counts(model, values, backend=backend, deadline=deadline, threads=threads)
        safety_stop = safety_stop or stopped
    counts = {name: round(values[j]) for name, j in sorted(model.x.items()) if round(values[j]) > 0}
    routing = {(t, c): values[j] for (t, c), j in sorted(model.y.items())
               if t in counts and values[j] > ROUTE_TOL * model.rates[c]}
    return Plan(status, gap, values[model.alpha], counts, routing, primary, safety_stop)


def _alpha_at_counts(model: MixModel, values: tuple[float, ...], *, backend: str, deadline: float,
                     threads: int) -> tuple[tuple[float, ...], bool]:
    """(values, safety_stop): the largest α, and its routing, at the counts of ``values``.

    The tie-break stages leave α anywhere within its tie tolerance of the optimum (they do not look at
    it); with the counts fixed this is an LP, which puts α back at the best those counts reach.
    """
    remaining = deadline - time.perf_counter()
    if remaining <= 0:
        return values, True
    milp = replace(model.milp, col_lower=list(model.milp.col_lower), col_upper=list(model.milp.col_upper))
    for j in model.x.values():
        milp.col_lower[j] = milp.col_upper[j] = round(values[j])
    result = solve_milp(milp, model.objectives["alpha"], backend=backend, time_limit_s=remaining,
                        max_nodes=MAX_NODES, threads=threads, start=values)
    if result.status == "infeasible":
        raise RuntimeError(f"{backend}: no routing for the counts of the plan just found")
    return (values if result.values is None else result.values), result.safety_stop


def _objective(model: MixModel, name: str, start: tuple[float, ...] | None) -> dict[int, float]:
    """The objective of stage ``name``; for GPUS_THEN_ORDER, W·GPUs + order (see the module docstring)."""
    if name != GPUS_THEN_ORDER:
        return model.objectives[name]
    assert start is not None, "a tie-break stage follows a stage that found a plan"
    gpus, order = model.objectives["gpus"], model.objectives["order"]
    weight = 1.0 + max(order.values(), default=0.0) * _value(model, gpus, start)
    return {j: weight * coef + order[j] for j, coef in gpus.items()}


def _value(model: MixModel, objective: dict[int, float], values: tuple[float, ...]) -> float:
    """The objective at ``values``, integer columns rounded (the solver leaves them within 1e-6)."""
    exact = {j: round(values[j]) if model.milp.integer[j] else values[j] for j in objective}
    return sum(coef * exact[j] for j, coef in objective.items())
