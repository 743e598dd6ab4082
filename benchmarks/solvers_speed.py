"""Solve time of the solvers versus problem size; prints markdown tables.

    python benchmarks/solvers_speed.py            # full sweep
    python benchmarks/solvers_speed.py --quick    # smaller sweep (a smoke run)

Fleet mix: seeded random instance types over six GPU types, collocated, prefill-only or decode-only, 1-8
GPUs each at a fixed price per GPU of its type; capacity = GPU speed x GPUs x a per-type efficiency
(lognormal, sigma 0.3: the parallel config and chunk size) x a per-(GPU type, class) affinity x 10% noise,
so types trade classes off against each other. 10 to 2,000 types, 1 to 8 request classes. Goodput rows
have an inventory and a budget that bind; cost rows a loose inventory and budget. Each row is one
``solve_mix`` call (HiGHS, one thread, top_k=1), wall and CPU time. Target: 1,000 types x 4 classes <= 2 s.

Expert placement: Zipf(1.0) loads, 256 experts on 64 ranks, without replication (4 slots per rank) and
with replication (5 and 6 slots per rank), CP-SAT deterministic time limit 2.0. Target: <= 5 s with a
reported gap.
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
    affinity = {(g, c.name): rng.lognormvariate(0, 0.25) for g in GPU_PRICES for c in classes}
    types = []
    for i in range(num_types):
        gpu = rng.choice(sorted(GPU_PRICES))
        n = rng.choice((1, 2, 4, 8))
        role = rng.choice(roles)
        efficiency = rng.lognormvariate(0, 0.3)  # parallel config and chunk size: good or bad overall
        capacity = {
            c.name: round(GPU_SPEED[gpu] * n * efficiency * affinity[gpu, c.name] * rng.lognormvariate(0, 0.1), 3)
            for c in classes
        }
        types.append(
            InstanceType(
                name=f"t{i:04d}_{gpu}_x{n}",
                gpus={gpu: n},
                cost_usd_per_h=round(GPU_PRICES[gpu] * n, 2),
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
        "| types | classes | objective | status | objective value | gap | binding | wall (s) | cpu (s) |",
        "|---:|---:|---|---|---:|---:|---|---:|---:|",
    ]
    for num_types, num_classes in sizes:
        for objective in ("goodput", "cost"):
            problem = random_mix_problem(num_types, num_classes, objective, seed=num_types * 10 + num_classes)
            wall, cpu = time.perf_counter(), time.process_time()
            best = solve_mix(problem, time_limit_s=60.0)[0]
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rows.append(
                f"| {num_types} | {num_classes} | {objective} | {best.status} | {best.objective:.4g} "
                f"| {best.gap:.2g} | {best.binding} | {wall:.2f} | {cpu:.2f} |"
            )
    return rows


def expert_table(cases: list[tuple[int, int, int, bool]], time_limit_s: float) -> list[str]:
    rows = [
        "| experts | ranks | slots/rank | replicate | status | imbalance | round-robin | gap | wall (s) | cpu (s) |",
        "|---:|---:|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for experts, ranks, slots, replicate in cases:
        problem = ExpertProblem(zipf_loads(experts, 1.0, seed=0), ranks, slots, replicate=replicate)
        wall, cpu = time.perf_counter(), time.process_time()
        result = place_experts(problem, time_limit_s=time_limit_s)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows.append(
            f"| {experts} | {ranks} | {slots} | {replicate} | {result.status} | {result.imbalance:.4f} "
            f"| {result.round_robin_imbalance:.4f} | {result.gap:.2%} | {wall:.2f} | {cpu:.2f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller sweep")
    args = parser.parse_args()
    solve_mix(random_mix_problem(2, 1, "cost", seed=0))  # the one-off solver imports stay out of the rows
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
