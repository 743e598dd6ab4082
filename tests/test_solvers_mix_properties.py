"""Monotonicity properties of solve_mix, checked by Hypothesis on small random fleets."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from solvers import InstanceType, MixProblem, RequestClass, solve_mix

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)
ROLES = st.sampled_from([frozenset({"prefill", "decode"}), frozenset({"prefill"}), frozenset({"decode"})])
CLASS_NAMES = ("chat", "long")


@st.composite
def fleets(draw, objective: str) -> MixProblem:
    """1-3 instance types on GPU types "ga"/"gb" (the first collocated), 1-2 classes, an inventory and maybe
    a budget."""
    classes = tuple(
        RequestClass(name, draw(st.floats(0.5, 4.0)), draw(st.sampled_from([0.0, 1e9])))
        for name in CLASS_NAMES[: draw(st.integers(1, 2))]
    )
    types = tuple(
        InstanceType(
            name=f"t{i}",
            gpus={draw(st.sampled_from(["ga", "gb"])): draw(st.sampled_from([1, 2, 4]))},
            cost_usd_per_h=draw(st.floats(0.5, 8.0)),
            roles=frozenset({"prefill", "decode"}) if i == 0 else draw(ROLES),
            capacity_rps={c.name: draw(st.floats(0.3, 4.0)) for c in classes},
            kv_egress_bytes_per_s=draw(st.sampled_from([float("inf"), 2e9])),
        )
        for i in range(draw(st.integers(1, 3)))
    )
    inventory = {"ga": draw(st.integers(0, 10)), "gb": draw(st.integers(0, 10))}
    budget = draw(st.none() | st.floats(5.0, 40.0))
    return MixProblem(types, classes, inventory=inventory, budget_usd_per_h=budget, objective=objective)


def alpha(problem: MixProblem) -> float:
    return solve_mix(problem)[0].alpha


def min_cost(problem: MixProblem) -> float:
    return solve_mix(problem)[0].objective  # inf when no plan serves the demand


@PROPERTY_SETTINGS
@given(fleets("goodput"), st.sampled_from(["ga", "gb"]), st.integers(1, 8))
def test_more_inventory_never_lowers_goodput(problem, gpu, extra):
    more = dict(problem.inventory)
    more[gpu] += extra
    assert alpha(dataclasses.replace(problem, inventory=more)) >= alpha(problem) * (1 - 1e-7) - 1e-9


@PROPERTY_SETTINGS
@given(fleets("goodput"), st.floats(0.5, 30.0))
def test_higher_budget_never_lowers_goodput(problem, extra):
    budget = problem.budget_usd_per_h if problem.budget_usd_per_h is not None else 10.0
    lower = dataclasses.replace(problem, budget_usd_per_h=budget)
    higher = dataclasses.replace(problem, budget_usd_per_h=budget + extra)
    assert alpha(higher) >= alpha(lower) * (1 - 1e-7) - 1e-9


@PROPERTY_SETTINGS
@given(fleets("cost"), st.floats(1.0, 3.0))
def test_scaling_demand_up_never_lowers_min_cost(problem, factor):
    scaled = dataclasses.replace(
        problem, classes=tuple(dataclasses.replace(c, rate_rps=c.rate_rps * factor) for c in problem.classes)
    )
    assert min_cost(scaled) >= min_cost(problem) * (1 - 1e-9)
