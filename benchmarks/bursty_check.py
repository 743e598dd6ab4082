"""Bursty arrivals (issue 8): the analytical goodput with gamma inter-arrival times of CV cv (Kingman-scaled
queueing, planner/capacity/serving.py) against `planner simulate` replaying the same gamma arrivals.

For each case and cv: the plan's predicted goodput, the simulated SLO attainment at it (mean of 3 seeds × 1200 s,
random routing = the per-instance model's assumption), and the simulated goodput: the highest rate whose
attainment reaches the percentile (bisection on the rate). Prints a markdown table (docs/levers/bursty.md).

    python benchmarks/bursty_check.py
"""

from __future__ import annotations

from planner.render.report import result_json
from planner.search.optimize import optimize
from planner.search.scenario import build_request
from planner.simulate import simulate_plan

CASES = [("llama-3.1-8b", "ttft=500ms,tpot=20ms,p=90", "isl=1024,osl=512", "h100_sxm:1", "agg"),
         ("llama-3.1-70b", "ttft=2s,tpot=50ms,p=90", "isl=2048,osl=256", "h100_sxm:8", "disagg")]
CVS = (0.5, 1.0, 2.0, 3.0)
SEEDS = (0, 1, 2)


def attainment(doc, rate):
    return sum(simulate_plan(doc, rate_rps=rate, duration_s=1200.0, seed=s, router="random").attainment
               for s in SEEDS) / len(SEEDS)


def simulated_goodput(doc, guess, target=0.90):
    lo, hi = 0.5 * guess, 1.5 * guess
    for _ in range(10):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if attainment(doc, mid) >= target else (lo, mid)
    return lo


def main():
    print("| model (mode, fleet) | arrival cv | plan | predicted goodput req/s | simulated attainment at it | "
          "simulated goodput req/s | predicted / simulated |")
    print("|---|---|---|---|---|---|---|")
    for model, slo, wl, gpus, mode in CASES:
        for cv in CVS:
            req = build_request(model, slo=slo, workload=f"{wl},arrival=gamma(cv={cv:g})", gpus=gpus, mode=mode)
            doc = result_json(optimize(req), req)
            plan = doc["plans"][0]
            g = plan["goodput_rps"]
            inst = " + ".join(f'{i["count"]}× {i["role"]} TP{i["tp"]}' for i in plan["instances"])
            sim = simulated_goodput(doc, g)
            print(f"| {model} ({mode}, {gpus}) | {cv:g} | {inst} | {g:.2f} | {attainment(doc, g):.1%} | {sim:.2f} | "
                  f"{g / sim:.2f} |", flush=True)


if __name__ == "__main__":
    main()
