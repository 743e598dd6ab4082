"""How solve_mix behaves: determinism, tie-breaks, top-k and families, explanations, and bad input."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest

from solvers import InstanceType, MixProblem, RequestClass, SolverInputError, solve_mix

AGG = frozenset({"prefill", "decode"})
PREFILL = frozenset({"prefill"})
DECODE = frozenset({"decode"})

TYPES = (
    InstanceType("h100_agg", {"h100": 8}, 98.0, AGG, {"chat": 10.0, "long": 2.0}, family="agg"),
    InstanceType("a100_agg", {"a100": 8}, 40.0, AGG, {"chat": 4.0, "long": 0.7}, family="agg"),
    InstanceType("h100_p", {"h100": 4}, 49.0, PREFILL, {"chat": 12.0, "long": 3.0}, family="disagg",
                 kv_egress_bytes_per_s=50e9),
    InstanceType("h100_d", {"h100": 4}, 49.0, DECODE, {"chat": 8.0, "long": 3.0}, family="disagg"),
    InstanceType("a100_d", {"a100": 4}, 20.0, DECODE, {"chat": 3.0, "long": 1.0}, family="disagg"),
)
CLASSES = (RequestClass("chat", 20.0, 1e9), RequestClass("long", 3.0, 8e9))


def problem(**changes) -> MixProblem:
    base = MixProblem(TYPES, CLASSES, inventory={"h100": 16, "a100": 32}, budget_usd_per_h=300.0)
    return dataclasses.replace(base, **changes)


def without_time(solutions):
    return [dataclasses.replace(s, time_s=0.0) for s in solutions]


def one_type(name: str, cost: float, capacity: float, gpus: int = 1, gpu: str = "g") -> InstanceType:
    return InstanceType(name, {gpu: gpus}, cost, AGG, {"chat": capacity})


# --- determinism --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["goodput", "cost"])
def test_identical_inputs_give_identical_plans(objective):
    wanted = problem(objective=objective, budget_usd_per_h=400.0, inventory={"h100": 24, "a100": 32})
    first = solve_mix(wanted, top_k=3, families=("agg", "disagg", "single_gpu_type"))
    second = solve_mix(wanted, top_k=3, families=("agg", "disagg", "single_gpu_type"))
    assert without_time(first) == without_time(second)
    assert repr(without_time(first)) == repr(without_time(second))


def test_plan_does_not_depend_on_the_order_of_types_or_classes():
    forward = solve_mix(problem(), top_k=2)
    backward = solve_mix(problem(instance_types=TYPES[::-1], classes=CLASSES[::-1]), top_k=2)
    assert without_time(forward) == without_time(backward)


def test_the_thread_count_can_change_between_calls():
    plans = [solve_mix(problem(), threads=threads)[0] for threads in (1, 2, 1)]
    assert plans[0].counts == plans[1].counts == plans[2].counts
    assert plans[0].alpha == pytest.approx(plans[1].alpha)


@pytest.mark.parametrize("backend", ["highs", "cbc"])
def test_solver_output_never_reaches_stdout(capfd, backend):
    solve_mix(problem(), backend=backend)
    assert capfd.readouterr().out == ""


# --- the optimum and its tie-breaks -------------------------------------------------------------------------


def test_goodput_fills_the_inventory_and_reports_the_exhausted_limit():
    best = solve_mix(problem(budget_usd_per_h=None, inventory={"h100": 16}))[0]
    assert best.status == "optimal" and best.gap == 0.0
    assert best.gpus == {"h100": 16}
    assert best.binding == "inventory:h100"
    assert best.hint == "16 of 16 h100 GPUs in use"
    served = {c.name: sum(r for (t, s), r in best.routing.items() if s == c.name and t != "h100_d") for c in CLASSES}
    assert served == pytest.approx({c.name: best.alpha * c.rate_rps for c in CLASSES})


def test_goodput_at_max_alpha_picks_the_cheapest_plan_and_says_the_cap_binds():
    best = solve_mix(problem(max_alpha=0.5))[0]
    assert best.alpha == pytest.approx(0.5)
    assert best.binding == "max_alpha"
    cheaper = solve_mix(problem(max_alpha=0.5, objective="cost", classes=tuple(
        dataclasses.replace(c, rate_rps=c.rate_rps / 2) for c in CLASSES)))[0]
    assert best.cost_usd_per_h == pytest.approx(cheaper.cost_usd_per_h)


def test_min_cost_serves_the_whole_demand():
    best = solve_mix(problem(objective="cost", budget_usd_per_h=400.0))[0]
    assert best.status == "optimal" and best.alpha == 1.0
    assert best.objective == best.cost_usd_per_h == pytest.approx(307.0)
    for name, count in best.counts.items():
        load = sum(r / TYPES_BY_NAME[name].capacity_rps[s] for (t, s), r in best.routing.items() if t == name)
        assert load <= count + 1e-9


TYPES_BY_NAME = {t.name: t for t in TYPES}


def test_ties_go_to_the_cheaper_plan_then_fewer_gpus_then_the_earlier_name():
    demand = (RequestClass("chat", 4.0),)
    cheaper = solve_mix(MixProblem((one_type("b", 2.0, 1.0), one_type("a", 3.0, 1.0)), demand, objective="cost"))
    assert cheaper[0].counts == {"b": 4}
    fewer_gpus = solve_mix(MixProblem(
        (one_type("b", 8.0, 4.0, gpus=1), one_type("a", 8.0, 4.0, gpus=2)), demand, objective="cost"))
    assert fewer_gpus[0].counts == {"b": 1}
    earlier = solve_mix(MixProblem((one_type("b", 8.0, 4.0), one_type("a", 8.0, 4.0)), demand, objective="cost"))
    assert earlier[0].counts == {"a": 1}
    goodput_tie = solve_mix(MixProblem((one_type("b", 2.0, 1.0), one_type("a", 3.0, 1.0)), demand,
                                       inventory={"g": 10}, max_alpha=0.5))
    assert goodput_tie[0].counts == {"b": 2}


def test_plans_equal_in_goodput_cost_and_gpus_go_to_the_type_whose_name_sorts_first():
    demand = (RequestClass("chat", 1.0), RequestClass("long", 1.0))
    # neither type dominates the other, and either one serves half the demand for the same price and GPUs
    b = InstanceType("b", {"g": 1}, 1.0, AGG, {"chat": 2.0, "long": 1.0})
    a = InstanceType("a", {"g": 1}, 1.0, AGG, {"chat": 1.0, "long": 2.0})
    for types in ((a, b), (b, a)):
        plans = solve_mix(MixProblem(types, demand, inventory={"g": 4}, max_alpha=0.5), top_k=2)
        assert [p.counts for p in plans] == [{"a": 1}, {"b": 1}]


def test_same_gpu_for_pd_keeps_prefill_and_decode_on_one_gpu_type():
    mixed = solve_mix(problem(objective="cost", budget_usd_per_h=None, inventory=None), families=("disagg",))[-1]
    assert {"h100_p", "a100_d"} <= set(mixed.counts)  # cheapest disaggregated plan mixes GPU types
    same = solve_mix(problem(objective="cost", budget_usd_per_h=None, inventory=None, same_gpu_for_pd=True),
                     families=("disagg",))[-1]
    assert set(same.gpus) == {"h100"}
    assert same.cost_usd_per_h > mixed.cost_usd_per_h


def test_kv_egress_caps_what_each_prefill_instance_ships():
    types = (
        InstanceType("p", {"g": 1}, 1.0, PREFILL, {"chat": 10.0}, kv_egress_bytes_per_s=2e9),
        InstanceType("d", {"g": 1}, 1.0, DECODE, {"chat": 10.0}),
    )
    demand = (RequestClass("chat", 10.0, kv_bytes_per_request=1e9),)
    best = solve_mix(MixProblem(types, demand, objective="cost"))[0]
    assert best.counts == {"d": 1, "p": 5}  # 10 req/s x 1 GB = 10 GB/s at 2 GB/s per prefill instance


def test_min_and_max_counts_are_respected():
    types = (dataclasses.replace(one_type("big", 5.0, 10.0), max_count=1), dataclasses.replace(
        one_type("small", 2.0, 1.0), min_count=2))
    best = solve_mix(MixProblem(types, (RequestClass("chat", 14.0),), objective="cost"))[0]
    assert best.counts == {"big": 1, "small": 4}
    assert best.binding == "max_count"


# --- top-k and families -------------------------------------------------------------------------------------


def test_top_k_plans_use_distinct_type_sets_and_are_ranked():
    plans = solve_mix(problem(), top_k=4)
    assert len(plans) == 4
    used = [frozenset(p.counts) for p in plans]
    assert len(set(used)) == 4
    alphas = [p.alpha for p in plans]
    assert alphas == sorted(alphas, reverse=True)
    assert without_time(plans[:1]) == without_time(solve_mix(problem()))


def test_top_k_stops_when_no_other_type_set_exists():
    plans = solve_mix(MixProblem((one_type("only", 1.0, 1.0),), (RequestClass("chat", 2.0),), objective="cost"),
                      top_k=3)
    assert [p.counts for p in plans] == [{"only": 2}]


def test_family_plans_use_only_their_family_and_never_beat_the_main_plan():
    solutions = solve_mix(problem(), families=("agg", "disagg", "single_gpu_type", "missing"))
    main, agg, disagg, single, missing = solutions
    assert [s.family for s in solutions] == ["", "agg", "disagg", "single_gpu_type", "missing"]
    assert set(agg.counts) <= {"h100_agg", "a100_agg"}
    assert set(disagg.counts) <= {"h100_p", "h100_d", "a100_d"}
    assert len(single.gpus) == 1
    for family_plan in (agg, disagg, single):
        assert family_plan.alpha <= main.alpha + 1e-9
    assert missing.status == "infeasible" and missing.hint == "no instance type has family 'missing'"


# --- infeasible plans and their explanations ----------------------------------------------------------------


def test_budget_shortfall_names_the_least_budget_that_suffices():
    short = solve_mix(problem(objective="cost", budget_usd_per_h=100.0, inventory=None))[0]
    unlimited = solve_mix(problem(objective="cost", budget_usd_per_h=None, inventory=None))[0]
    assert short.status == "infeasible" and short.binding == "budget"
    assert short.hint == f"to serve the full demand, budget must be at least ${unlimited.cost_usd_per_h:.2f}/h"
    assert math.isinf(short.objective) and short.counts == {}


def test_inventory_shortfall_counts_exactly_the_missing_gpus():
    short = solve_mix(problem(objective="cost", budget_usd_per_h=None, inventory={"h100": 4}))[0]
    assert short.status == "infeasible" and short.binding == "inventory:a100,inventory:h100"
    assert short.hint.startswith("to serve the full demand, needs ")
    for more, gpu, total in re.findall(r"needs (\d+) more (\w+) GPUs \((\d+) instead of", short.hint):
        enough = problem(objective="cost", budget_usd_per_h=None, inventory={"h100": 4, gpu: int(total)})
        assert solve_mix(enough)[0].status == "optimal"
        one_short = problem(objective="cost", budget_usd_per_h=None, inventory={"h100": 4, gpu: int(total) - 1})
        assert solve_mix(one_short)[0].status == "infeasible"
        assert int(total) - int(more) == {"h100": 4}.get(gpu, 0)


def test_limits_needed_together_are_joined_with_plus():
    short = solve_mix(problem(objective="cost", budget_usd_per_h=30.0, inventory={"h100": 4}))[0]
    assert short.binding == "budget+inventory:h100"
    assert short.hint == (
        "to serve the full demand, budget must be at least $294.00/h and needs 20 more h100 GPUs (24 instead of 4)"
    )


def test_empty_inventory_gives_an_explained_infeasible_plan():
    empty = solve_mix(problem(inventory={}, budget_usd_per_h=None))[0]
    assert empty.status == "infeasible" and empty.alpha == 0.0 and empty.counts == {}
    assert empty.binding == "inventory:a100,inventory:h100"
    assert empty.hint.startswith("to serve even 0.1% of the demand, needs 8 more a100 GPUs")


def test_a_class_nobody_can_decode_is_a_capacity_problem():
    prefill_only = tuple(t for t in TYPES if t.roles == PREFILL)
    result = solve_mix(problem(instance_types=prefill_only))[0]
    assert result.status == "infeasible" and result.binding == "capacity"
    assert result.hint == "class 'chat' has no decode-capable instance type with capacity for it"


def test_an_exhausted_time_limit_is_reported_not_raised():
    result = solve_mix(problem(), time_limit_s=1e-9)[0]
    assert result.status == "time_limit" and result.counts == {}
    assert "time limit" in result.hint


# --- bad input ----------------------------------------------------------------------------------------------


def replace_type(index: int, **changes) -> MixProblem:
    types = list(TYPES)
    types[index] = dataclasses.replace(types[index], **changes)
    return problem(instance_types=tuple(types))


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (problem(classes=(RequestClass("chat", 0.0), RequestClass("long", 0.0))), "classes"),
        (replace_type(0, capacity_rps={"chat": float("nan")}), "instance_types['h100_agg'].capacity_rps['chat']"),
        (replace_type(1, capacity_rps={"chat": -1.0}), "instance_types['a100_agg'].capacity_rps['chat']"),
        (replace_type(1, capacity_rps={"chta": 1.0}), "instance_types['a100_agg'].capacity_rps"),
        (replace_type(2, cost_usd_per_h=float("inf")), "instance_types['h100_p'].cost_usd_per_h"),
        (replace_type(2, roles=frozenset({"prefil"})), "instance_types['h100_p'].roles"),
        (replace_type(3, gpus={}), "instance_types['h100_d'].gpus"),
        (replace_type(3, gpus={"h100": 0}), "instance_types['h100_d'].gpus['h100']"),
        (replace_type(3, name="h100_p"), "instance_types[3].name"),
        (replace_type(4, min_count=2, max_count=1), "instance_types['a100_d'].max_count"),
        (replace_type(4, kv_egress_bytes_per_s=0.0), "instance_types['a100_d'].kv_egress_bytes_per_s"),
        (problem(classes=(RequestClass("chat", -5.0),)), "classes['chat'].rate_rps"),
        (problem(inventory={"h100": -1}), "inventory['h100']"),
        (problem(budget_usd_per_h=float("nan")), "budget_usd_per_h"),
        (problem(objective="latency"), "objective"),
        (problem(max_alpha=0.0), "max_alpha"),
        (problem(instance_types=()), "instance_types"),
        (problem(inventory=None, budget_usd_per_h=None), "objective"),
    ],
)
def test_bad_input_raises_an_error_naming_the_field(bad, field):
    with pytest.raises(SolverInputError) as error:
        solve_mix(bad)
    assert str(error.value).startswith(field + ":"), str(error.value)


@pytest.mark.parametrize(
    ("options", "field"),
    [({"backend": "gurobi"}, "backend"), ({"top_k": 0}, "top_k"), ({"threads": 0}, "threads"),
     ({"time_limit_s": float("nan")}, "time_limit_s"), ({"families": "agg"}, "families")],
)
def test_bad_options_raise_an_error_naming_the_option(options, field):
    with pytest.raises(SolverInputError, match=f"^{field}:"):
        solve_mix(problem(), **options)


def test_solver_input_error_is_a_value_error():
    assert issubclass(SolverInputError, ValueError)
