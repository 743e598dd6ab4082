"""Solve time of the solvers versus problem size; prints markdown tables.

    python benchmarks/solvers_speed.py            # full sweep
    python benchmarks/solvers_speed.py --quick    # smaller sweep (a smoke run)

Fleet mix: seeded random instance types over six GPU types (collocated, prefill-only and decode-only,
1-8 GPUs each, prices per GPU with noise, capacities roughly proportional to GPUs), 10 to 2,000 types,
1 to 8 request classes, an inventory and a budget that both bind. Each row is one ``solve_mix`` call
(HiGHS, one thread, top_k=1, with the binding-constraint analysis the planner gets), for the goodput and
the cost objective. Targets: 1,000 types x 4 classes <= 2 s.

Expert placement: Zipf(1.0) loads, 256 experts on 64 ranks, without replication (4 slots per rank) and
with replication (5 and 6 slots per rank). Target: <= 5 s with a reported gap.
"""

from __future__ import annotations

import argparse
import random
import time

from solvers import ExpertProblem, InstanceType, MixProblem, RequestClass, place_experts, solve_mix, zipf_loads

GPU_PRICES = {"a100_80g": 1.8, "b200": 6.0, "h100_sxm": 3.0, "h200": 3.8, "l40s": 1.0, "mi300x": 2.6}
GPU_SPEED = {"a100_80g": 1.0, "b200": 4.0, "h100_sxm": 2.2, "h200": 2.6, "l40s": 0.6, "mi300x": 2.3}


def random_mix_problem(num_types: int, num_classes: int, objective: str, seed: int) -> MixProblem:
    """A reproducible fleet-mix instance whose inventory and budget both bind."""
    rng = random.Random(seed)
    classes = tuple(
        RequestClass(f"c{s}", rate_rps=rng.uniform(5, 50), kv_bytes_per_request=rng.uniform(0.1e9, 2e9))
        for s in range(num_classes)
    )
    roles = (frozenset({"prefill", "decode"}), frozenset({"prefill"}), frozenset({"decode"}))
    types = []
    for i in range(num_types):
        gpu = rng.choice(sorted(GPU_PRICES))
        n = rng.choice((1, 2, 4, 8))
        role = rng.choice(roles)
        capacity = {
            c.name: round(GPU_SPEED[gpu] * n * rng.lognormvariate(0, 0.4), 3)
            for c in classes
            if rng.random() < 0.9
        }
        types.append(
            InstanceType(
                name=f"t{i:04d}_{gpu}_x{n}",
                gpus={gpu: n},
                cost_usd_per_h=round(GPU_PRICES[gpu] * n * rng.uniform(0.9, 1.1), 2),
                roles=role,
                capacity_rps=capacity,
                family="agg" if len(role) == 2 else "disagg",
                kv_egress_bytes_per_s=50e9 * n if role == {"prefill"} else float("inf"),
            )
        )
    demand = sum(c.rate_rps for c in classes)
    inventory = {g: 8 * rng.randint(2, 16) for g in sorted(GPU_PRICES)}
    budget = round(demand * rng.uniform(1.5, 3.0), 2)
    if objective == "cost":
        inventory = {g: 4 * n for g, n in inventory.items()}
        budget = 10 * budget
    return MixProblem(tuple(types), classes, inventory=inventory, budget_usd_per_h=budget, objective=objective)


def mix_table(sizes: list[tuple[int, int]]) -> list[str]:
    rows = [
        "| types | classes | objective | status | objective value | gap | binding | time (s) |",
        "|---:|---:|---|---|---:|---:|---|---:|",
    ]
    for num_types, num_classes in sizes:
        for objective in ("goodput", "cost"):
            problem = random_mix_problem(num_types, num_classes, objective, seed=num_types * 10 + num_classes)
            began = time.perf_counter()
            best = solve_mix(problem, time_limit_s=60.0)[0]
            elapsed = time.perf_counter() - began
            rows.append(
                f"| {num_types} | {num_classes} | {objective} | {best.status} | {best.objective:.4g} "
                f"| {best.gap:.2g} | {best.binding} | {elapsed:.2f} |"
            )
    return rows


def expert_table(cases: list[tuple[int, int, int, bool]], time_limit_s: float) -> list[str]:
    rows = [
        "| experts | ranks | slots/rank | replicate | status | imbalance | round-robin | gap | time (s) |",
        "|---:|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for experts, ranks, slots, replicate in cases:
        problem = ExpertProblem(zipf_loads(experts, 1.0, seed=0), ranks, slots, replicate=replicate)
        began = time.perf_counter()
        result = place_experts(problem, time_limit_s=time_limit_s)
        elapsed = time.perf_counter() - began
        rows.append(
            f"| {experts} | {ranks} | {slots} | {replicate} | {result.status} | {result.imbalance:.4f} "
            f"| {result.round_robin_imbalance:.4f} | {result.gap:.2%} | {elapsed:.2f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller sweep")
    args = parser.parse_args()
    if args.quick:
        sizes = [(10, 1), (100, 4), (1000, 4)]
        cases = [(64, 8, 8, False), (256, 64, 5, True)]
    else:
        sizes = [(n, s) for n in (10, 100, 500, 1000, 2000) for s in (1, 4, 8)]
        cases = [(256, 64, 4, False), (256, 64, 5, True), (256, 64, 6, True)]
    print("## Fleet mix (solve_mix, HiGHS, 1 thread)\n")
    print("\n".join(mix_table(sizes)))
    print("\n## Expert placement (place_experts, CP-SAT, 1 worker, deterministic time limit 2.0)\n")
    print("\n".join(expert_table(cases, time_limit_s=2.0)))


if __name__ == "__main__":
    main()
