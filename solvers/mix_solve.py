"""Lexicographic solve of a built fleet-mix model: the primary objective, then the tie-breaks.

Each stage minimises one objective of ``MixModel.objectives``; before the next stage a row fixes the
stage's objective at its optimum (within ``TIE_TOL·(1 + |value|)``, so values closer than that count as
tied) and the previous solution is handed to the solver as a starting incumbent. A separate solve per
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
from dataclasses import dataclass

from .backends import solve_milp
from .mix_model import MixModel

SOLVED = ("optimal", "feasible")  # statuses that come with a plan
GPUS_THEN_ORDER = "gpus, then order"
STAGES = {"goodput": ("alpha", "cost", GPUS_THEN_ORDER), "cost": ("cost", GPUS_THEN_ORDER)}
TIE_TOL = 1e-9
ROUTE_EPS = 1e-9  # routed rates below this (req/s) are solver noise and are dropped


@dataclass(frozen=True)
class Plan:
    """A solved plan, before it becomes a MixSolution. ``counts``/``routing`` empty without a solution."""

    status: str  # "optimal" | "feasible" | "infeasible" | "time_limit"
    gap: float
    alpha: float
    counts: dict[str, int]
    routing: dict[tuple[str, str], float]
    primary: float  # the first stage's objective value (minimised: −α for "alpha")


def solve_stages(
    model: MixModel, stages: tuple[str, ...], *, backend: str, deadline: float, threads: int
) -> Plan:
    """Solve ``stages`` in order on ``model`` (which gains the fixing rows) until ``deadline``.

    The status and gap are the first stage's; a tie-break stage cut short by the deadline keeps the best
    solution found so far.
    """
    values = None
    status, gap, primary = "time_limit", math.inf, math.inf
    for k, name in enumerate(stages):
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            break
        objective = _objective(model, name, values)
        result = solve_milp(
            model.milp, objective, backend=backend, time_limit_s=remaining, threads=threads, start=values
        )
        if result.values is None:
            if k == 0:
                status = result.status
            break
        values = result.values
        value = _value(model, objective, values)
        if k == 0:
            status, gap, primary = result.status, result.gap, value
        if k + 1 < len(stages):
            model.milp.add_row(list(objective.items()), -math.inf, value + TIE_TOL * (1 + abs(value)))
    if values is None:
        return Plan(status, math.inf, 0.0, {}, {}, math.inf)
    counts = {name: round(values[j]) for name, j in sorted(model.x.items()) if round(values[j]) > 0}
    routing = {key: values[j] for key, j in sorted(model.y.items()) if values[j] > ROUTE_EPS}
    return Plan(status, gap, values[model.alpha], counts, routing, primary)


def _objective(model: MixModel, name: str, start: tuple[float, ...] | None) -> dict[int, float]:
    """The objective of stage ``name``; for GPUS_THEN_ORDER, W·GPUs + order (see the module docstring)."""
    if name != GPUS_THEN_ORDER:
        return model.objectives[name]
    gpus, order = model.objectives["gpus"], model.objectives["order"]
    weight = 1.0 + max(order.values(), default=0.0) * _value(model, gpus, start)
    return {j: weight * coef + order[j] for j, coef in gpus.items()}


def _value(model: MixModel, objective: dict[int, float], values: tuple[float, ...]) -> float:
    """The objective at ``values``, integer columns rounded (the solver leaves them within 1e-6)."""
    exact = {j: round(values[j]) if model.milp.integer[j] else values[j] for j in objective}
    return sum(coef * exact[j] for j, coef in objective.items())
