"""solve_mix returns the true lexicographic optimum: checked against brute-force enumeration of every
instance count vector (each vector's routing is an LP solved with scipy), and against the CBC backend."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from solvers import InstanceType, MixProblem, RequestClass, solve_mix
from solvers.mix_solve import TIE_TOL

GPU_TYPES = ("ga", "gb")
ROLE_CHOICES = (
    frozenset({"prefill", "decode"}),
    frozenset({"prefill", "decode"}),
    frozenset({"prefill", "decode"}),
    frozenset({"prefill"}),
    frozenset({"decode"}),
)


def random_problem(seed: int, objective: str) -> MixProblem:
    """A small instance: 1-3 types, 1-2 classes, an inventory and/or a budget that keep counts small."""
    rng = random.Random(seed)
    classes = tuple(
        RequestClass(f"s{k}", rate_rps=round(rng.uniform(0.3, 3.0), 2), kv_bytes_per_request=rng.choice((0.0, 2e9)))
        for k in range(rng.randint(1, 2))
    )
    names = rng.sample(["alpha", "bravo", "charlie", "delta", "echo"], rng.choice((1, 2, 3, 3)))
    types = []
    for name in names:
        gpu = rng.choice(GPU_TYPES)
        gpus = {gpu: rng.choice((1, 2, 4))} if rng.random() < 0.9 else {"ga": 1, "gb": 1}
        roles = rng.choice(ROLE_CHOICES)
        egress = rng.uniform(1e9, 6e9) if roles == {"prefill"} and rng.random() < 0.5 else math.inf
        types.append(
            InstanceType(
                name=name,
                gpus=gpus,
                cost_usd_per_h=rng.choice((float(sum(gpus.values())), round(rng.uniform(1.0, 9.0), 2))),
                roles=roles,
                capacity_rps={c.name: round(rng.uniform(0.5, 4.0), 2) for c in classes if rng.random() < 0.9},
                family=rng.choice(("agg", "disagg")),
                kv_egress_bytes_per_s=egress,
                min_count=1 if rng.random() < 0.1 else 0,
                max_count=rng.randint(1, 3) if rng.random() < 0.3 else None,
            )
        )
    inventory = {g: rng.randint(1, 10) for g in GPU_TYPES if rng.random() < 0.95}
    budget = round(rng.uniform(5.0, 40.0), 2) if rng.random() < 0.6 else None
    if rng.random() < 0.1:
        inventory = {g: rng.randint(0, 3) for g in GPU_TYPES}
    return MixProblem(
        tuple(types),
        classes,
        inventory=inventory,
        budget_usd_per_h=budget,
        objective=objective,
        same_gpu_for_pd=rng.random() < 0.2,
        max_alpha=round(rng.uniform(0.3, 2.0), 2) if objective == "goodput" and rng.random() < 0.2 else None,
    )


# --- brute force: enumerate counts, solve each count vector's routing LP ---------------------------------


def count_box(problem: MixProblem) -> list[range]:
    ranges = []
    for t in problem.instance_types:
        top = t.max_count if t.max_count is not None else 10**6
        for g, n in t.gpus.items():
            top = min(top, problem.inventory.get(g, 0) // n)
        if problem.budget_usd_per_h is not None and t.cost_usd_per_h > 0:
            top = min(top, int(problem.budget_usd_per_h / t.cost_usd_per_h + 1e-9))
        assert top < 10**6, "the test instances keep every count bounded"
        ranges.append(range(t.min_count, max(top, t.min_count - 1) + 1))
    return ranges


def within_limits(problem: MixProblem, x: tuple[int, ...]) -> bool:
    types = problem.instance_types
    if problem.budget_usd_per_h is not None:
        if sum(t.cost_usd_per_h * n for t, n in zip(types, x)) > problem.budget_usd_per_h + 1e-9:
            return False
    for g in GPU_TYPES:
        if sum(t.gpus.get(g, 0) * n for t, n in zip(types, x)) > problem.inventory.get(g, 0):
            return False
    if problem.same_gpu_for_pd:
        split = [set(t.gpus) for t, n in zip(types, x) if n > 0 and len(t.roles) == 1]
        if split and (len(set().union(*split)) > 1):
            return False
    return True


def routed_alpha(problem: MixProblem, x: tuple[int, ...], fixed_alpha: float | None) -> float | None:
    """Largest α (or feasibility of the fixed α) the counts x can route; None if infeasible."""
    from scipy.optimize import linprog

    classes = [c for c in problem.classes if c.rate_rps > 0]
    types = problem.instance_types
    pairs = [(i, k) for i, t in enumerate(types) for k, c in enumerate(classes) if t.capacity_rps.get(c.name, 0) > 0]
    n = len(pairs) + 1  # y[pair]..., α
    a_ub, b_ub, a_eq, b_eq = [], [], [], []
    for i, t in enumerate(types):
        row = [0.0] * n
        for j, (ii, k) in enumerate(pairs):
            if ii == i:
                row[j] = 1.0 / t.capacity_rps[classes[k].name]
        a_ub.append(row)
        b_ub.append(x[i])
        if t.roles == {"prefill"} and math.isfinite(t.kv_egress_bytes_per_s):
            row = [0.0] * n
            for j, (ii, k) in enumerate(pairs):
                if ii == i:
                    row[j] = classes[k].kv_bytes_per_request
            a_ub.append(row)
            b_ub.append(t.kv_egress_bytes_per_s * x[i])
    for k, c in enumerate(classes):
        for role in ("prefill", "decode"):
            row = [0.0] * n
            for j, (i, kk) in enumerate(pairs):
                if kk == k and role in types[i].roles:
                    row[j] = 1.0
            row[-1] = -c.rate_rps
            a_eq.append(row)
            b_eq.append(0.0)
    cap = problem.max_alpha if problem.max_alpha is not None else None
    bounds = [(0, None)] * len(pairs) + [(fixed_alpha, fixed_alpha) if fixed_alpha is not None else (0, cap)]
    cost = [0.0] * len(pairs) + [-1.0]
    result = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    return -result.fun if result.status == 0 else None


def brute_force(problem: MixProblem) -> tuple[tuple[int, ...], float, bool] | None:
    """(counts, α, unique) of the lexicographic optimum by enumeration; None if there is no plan.

    Order: goodput = (max α, min $/h, min GPUs, min Σ position·count); cost = the same at α = 1. ``unique``
    is False when another count vector ties on every key (then only the keys are comparable).
    """
    types = problem.instance_types
    position = {name: k + 1 for k, name in enumerate(sorted(t.name for t in types))}

    def key(x):
        return (
            round(sum(t.cost_usd_per_h * n for t, n in zip(types, x)), 9),
            sum(sum(t.gpus.values()) * n for t, n in zip(types, x)),
            sum(position[t.name] * n for t, n in zip(types, x)),
        )

    candidates = sorted((x for x in itertools.product(*count_box(problem)) if within_limits(problem, x)), key=key)
    if problem.objective == "goodput":
        maximal = [x for x in candidates if not any(y != x and all(b >= a for a, b in zip(x, y)) for y in candidates)]
        best = max((routed_alpha(problem, x, None) or 0.0) for x in maximal) if maximal else 0.0
        if best <= 1e-9:
            return None
        enough = best - TIE_TOL * (1 + best)
        winners = [x for x in candidates if (routed_alpha(problem, x, None) or 0.0) >= enough and key(x) == key(x)]
    else:
        best, winners = 1.0, [x for x in candidates if routed_alpha(problem, x, 1.0) is not None]
    if not winners:
        return None
    first = winners[0]
    ties = [x for x in winners if key(x) == key(first)]
    return first, best, len(ties) == 1


def counts_vector(problem: MixProblem, counts: dict[str, int]) -> tuple[int, ...]:
    return tuple(counts.get(t.name, 0) for t in problem.instance_types)


def assert_matches_brute_force(problem: MixProblem) -> None:
    solution = solve_mix(problem)[0]
    expected = brute_force(problem)
    if expected is None:
        assert solution.status == "infeasible", (problem, solution)
        assert solution.binding and solution.hint
        return
    counts, alpha, unique = expected
    assert solution.status == "optimal", (problem, solution)
    types = problem.instance_types
    got = counts_vector(problem, solution.counts)
    assert solution.alpha == pytest.approx(alpha, rel=1e-6, abs=1e-9), (problem, solution, counts)
    assert solution.cost_usd_per_h == pytest.approx(sum(t.cost_usd_per_h * n for t, n in zip(types, counts)), abs=1e-6)
    assert sum(solution.gpus.values()) == sum(sum(t.gpus.values()) * n for t, n in zip(types, counts))
    if unique:
        assert got == counts, (problem, solution)


def test_goodput_optimum_equals_brute_force_on_200_random_instances():
    for seed in range(200):
        assert_matches_brute_force(random_problem(seed, "goodput"))


def test_min_cost_equals_brute_force_on_200_random_instances():
    for seed in range(200):
        assert_matches_brute_force(random_problem(1000 + seed, "cost"))


def test_highs_and_cbc_agree_on_the_objective():
    for seed in range(12):
        for objective in ("goodput", "cost"):
            problem = random_problem(2000 + seed, objective)
            highs = solve_mix(problem, backend="highs")[0]
            cbc = solve_mix(problem, backend="cbc")[0]
            assert (highs.status, cbc.status) in (("optimal", "optimal"), ("infeasible", "infeasible"))
            assert cbc.backend == "cbc" and highs.backend == "highs"
            if highs.status == "optimal":
                assert cbc.objective == pytest.approx(highs.objective, rel=1e-6, abs=1e-9)
                assert cbc.cost_usd_per_h == pytest.approx(highs.cost_usd_per_h, abs=1e-6)
                assert cbc.gpus == highs.gpus
