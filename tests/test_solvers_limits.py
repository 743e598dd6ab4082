"""Solver limits: deterministic node limits decide the answer, the wall clock is only a flagged safety stop,
and every answer a backend returns is checked before it is used."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

import solvers.mix_solve as mix_solve
from solvers import InstanceType, MixProblem, RequestClass, solve_mix
from solvers.backends import MilpModel, MilpResult, check_solution, solve_milp

BOTH = frozenset({"prefill", "decode"})
GPU_PRICES = {"a100": 1.8, "b200": 6.0, "h100": 3.0, "l40s": 1.0}


def branching_problem() -> MixProblem:
    """Ten random collocated types over four GPU types, three classes, a binding inventory and budget: HiGHS
    needs more than one branch-and-bound node for a tie-break (benchmarks/solvers_speed.py, reduced)."""
    rng = random.Random(1)
    classes = tuple(RequestClass(f"c{s}", rate_rps=rng.uniform(5, 50)) for s in range(3))
    types = []
    for i in range(10):
        gpu, n = rng.choice(sorted(GPU_PRICES)), rng.choice((1, 2, 4, 8))
        types.append(InstanceType(f"t{i:02d}_{gpu}_x{n}", {gpu: n}, round(GPU_PRICES[gpu] * n, 2), BOTH,
                                  {c.name: round(n * rng.lognormvariate(0, 0.4), 3) for c in classes}))
    inventory = {g: 8 * rng.randint(2, 6) for g in sorted(GPU_PRICES)}
    return MixProblem(tuple(types), classes, inventory=inventory, budget_usd_per_h=60.0)


def without_time(solution):
    return dataclasses.replace(solution, time_s=0.0)


def test_a_node_limit_gives_a_feasible_plan_that_is_the_same_on_every_run(monkeypatch):
    problem = branching_problem()
    proven = solve_mix(problem)[0]
    assert proven.status == "optimal"
    monkeypatch.setattr(mix_solve, "MAX_NODES", 1)
    first, second = solve_mix(problem)[0], solve_mix(problem)[0]
    assert first.status == "feasible" and not first.safety_stop  # never labelled optimal
    assert 0 <= first.gap < 1
    assert first.alpha <= proven.alpha * (1 + 1e-9)
    assert without_time(first) == without_time(second)


def test_the_safety_stop_is_flagged_not_raised():
    result = solve_mix(branching_problem(), time_limit_s=1e-9)[0]
    assert result.status == "time_limit" and result.counts == {} and result.safety_stop
    assert "time limit" in result.hint and "safety stop" in result.hint


def test_a_plan_solved_to_the_end_has_no_safety_stop():
    assert not solve_mix(branching_problem())[0].safety_stop


def test_cbc_gets_a_threads_option_only_above_one_thread(monkeypatch):
    """`-threads 1` switches CBC 2.10.3 into threaded mode, which stalls (coin-or/Cbc#640)."""
    import pulp

    seen = []
    real = pulp.PULP_CBC_CMD

    def spy(**options):
        seen.append(options.get("threads"))
        return real(**options)

    monkeypatch.setattr(pulp, "PULP_CBC_CMD", spy)
    problem = branching_problem()
    one = solve_mix(problem, backend="cbc", threads=1)[0]
    assert seen and set(seen) == {None}
    seen.clear()
    two = solve_mix(problem, backend="cbc", threads=2)[0]
    assert set(seen) == {2}
    assert one.cost_usd_per_h == pytest.approx(two.cost_usd_per_h)


def test_a_tie_break_stage_without_a_plan_is_an_error(monkeypatch):
    """The previous stage's plan satisfies every later stage, so "infeasible" there is a backend failure;
    it must never fall back silently to the earlier plan."""
    real = mix_solve.solve_milp

    def fails_after_the_first_stage(model, objective, *, start=None, **options):
        if start is not None:
            return MilpResult("infeasible", None, math.inf, math.inf)
        return real(model, objective, start=start, **options)

    monkeypatch.setattr(mix_solve, "solve_milp", fails_after_the_first_stage)
    with pytest.raises(RuntimeError, match="tie-break stage 'cost' found no plan"):
        solve_mix(branching_problem())


# --- check_solution: what a returned vector must satisfy -------------------------------------------------


def small_model() -> MilpModel:
    """x0 integer in [0, 5], x1 in [0, 10], x0 + x1 <= 6."""
    model = MilpModel()
    x0, x1 = model.add_var(0, 5, integer=True), model.add_var(0, 10)
    model.add_row([(x0, 1.0), (x1, 1.0)], -math.inf, 6.0)
    return model


@pytest.mark.parametrize("values, objective, wrong", [
    ((2.0, 4.0), -10.0, None),
    ((2.0, 4.0 + 1e-7), -10.0, None),  # within the relative tolerance (CBC's 8 digits)
    ((2.0, 4.0), -12.0, "not the -12.0 reported"),  # HiGHS's start vector with the optimum's value
    ((2.5, 3.5), -9.5, "integer column 0"),
    ((6.0, 0.0), -6.0, "column 0 at 6.0"),
    ((2.0, 4.1), -10.2, "row 0"),
])
def test_check_solution_names_what_is_wrong(values, objective, wrong):
    cost = [-1.0, -2.0]
    objective = sum(c * v for c, v in zip(cost, values)) if wrong != "not the -12.0 reported" else objective
    problem = check_solution(small_model(), cost, MilpResult("optimal", values, objective, 0.0))
    assert (problem is None) if wrong is None else (wrong in problem)


def test_a_wrong_answer_is_solved_again_without_the_start(monkeypatch):
    import solvers.backends as backends

    real = backends._solve_highs
    calls = []

    def hands_back_the_start(model, cost, time_limit_s, max_nodes, threads, start, plain):
        calls.append((start is not None, plain))
        right = real(model, cost, time_limit_s, max_nodes, threads, start, plain)
        return right if start is None else dataclasses.replace(right, values=tuple(start))

    monkeypatch.setattr(backends, "_solve_highs", hands_back_the_start)
    result = solve_milp(small_model(), {0: -1.0, 1: -2.0}, max_nodes=100, start=(0.0, 0.0))
    assert calls == [(True, False), (False, True)]
    assert result.status == "optimal" and result.values == (0.0, 6.0) and result.objective == -12.0
