"""The same input gives the same answer on a busy machine: the solvers stop at deterministic limits (MILP
nodes, CP-SAT deterministic time), and the wall clock only at a safety stop far beyond them.

An expert placement with planner optimize's settings and a large fleet-mix MILP with its default time limit
are solved first as the test run leaves the machine (idle, or next to the other pytest-xdist workers), then
again next to CPU-burning processes (more burners than this machine has spare cores); the answers must be
identical, and the first run must have used its whole deterministic budget (no fallback, no safety stop). Before issue 11 the placement's wall cap (3 × 0.5 s) fired
under load and the greedy fallback came back instead (2 failures in 5 runs on a busy machine).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import random
import time

from planner.search.optimize import PLACEMENT_DETERMINISTIC_S, Request
from solvers import ExpertProblem, InstanceType, MixProblem, RequestClass, place_experts, solve_mix, zipf_loads

BURN_S = 25.0  # a burner stops by itself after this long, even if the test never gets to stop it
GPU_PRICES = {"a100": 1.8, "b200": 6.0, "h100": 3.0, "h200": 3.8, "l40s": 1.0, "mi300x": 2.6}
ROLES = (frozenset({"prefill", "decode"}), frozenset({"prefill"}), frozenset({"decode"}))


def burn(until: float) -> None:
    while time.time() < until:
        pass


def large_mix_problem() -> MixProblem:
    """300 random types (collocated, prefill-only, decode-only) over six GPU types, four classes, a binding
    inventory and budget: the generator of benchmarks/solvers_speed.py."""
    rng = random.Random(7)
    classes = tuple(RequestClass(f"c{s}", rate_rps=rng.uniform(5, 50), kv_bytes_per_request=rng.uniform(0.1e9, 2e9))
                    for s in range(4))
    affinity = {(g, c.name): rng.lognormvariate(0, 0.25) for g in GPU_PRICES for c in classes}
    types = []
    for i in range(300):
        gpu, n, roles = rng.choice(sorted(GPU_PRICES)), rng.choice((1, 2, 4, 8)), rng.choice(ROLES)
        efficiency = rng.lognormvariate(0, 0.3)
        capacity = {c.name: round(n * efficiency * affinity[gpu, c.name] * rng.lognormvariate(0, 0.1), 3)
                    for c in classes}
        types.append(InstanceType(f"t{i:04d}_{gpu}_x{n}", {gpu: n}, round(GPU_PRICES[gpu] * n, 2), roles, capacity,
                                  kv_egress_bytes_per_s=50e9 * n if roles == ROLES[1] else float("inf")))
    demand = sum(c.rate_rps for c in classes)
    inventory = {g: 8 * rng.randint(2, 16) for g in sorted(GPU_PRICES)}
    return MixProblem(tuple(types), classes, inventory=inventory, budget_usd_per_h=round(demand * 2.0, 2))


def burner_count() -> int:
    """Two more than the cores, less the other pytest-xdist workers (busy themselves): at most 8."""
    others = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) - 1
    return min(8, max(2, (os.cpu_count() or 1) + 2 - others))


def answers():
    """A placement with planner optimize's settings, 64 experts on 8 EP ranks with spare slots (so that CP-SAT
    runs its whole deterministic budget), and the best plan of the large MILP (the best only: each further plan
    is one more full MILP solve, ~2x the time next to the burners, and tests nothing the first does not)."""
    placement = place_experts(ExpertProblem(zipf_loads(64, 1.0, seed=0), ranks=8, slots_per_rank=9, replicate=True),
                              time_limit_s=PLACEMENT_DETERMINISTIC_S, seed=0)
    plans = solve_mix(large_mix_problem(), time_limit_s=Request.time_limit_s, top_k=1)
    return dataclasses.replace(placement, time_s=0.0), [dataclasses.replace(p, time_s=0.0) for p in plans]


def test_placement_and_fleet_mix_are_the_same_next_to_cpu_burners():
    idle_placement, idle_plans = answers()
    assert idle_placement.status == "feasible" and not idle_placement.safety_stop  # ran its whole budget
    assert all(p.status == "optimal" and not p.safety_stop for p in idle_plans)
    context = multiprocessing.get_context("spawn")
    burners = [context.Process(target=burn, args=(time.time() + BURN_S,), daemon=True)
               for _ in range(burner_count())]
    try:
        for p in burners:
            p.start()
        busy_placement, busy_plans = answers()
    finally:
        for p in burners:
            p.kill()
        for p in burners:
            p.join()
    assert busy_placement == idle_placement
    assert busy_plans == idle_plans
