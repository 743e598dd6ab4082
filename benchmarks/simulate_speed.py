"""Speed of `planner simulate`: wall time to simulate ~100k requests through optimizer plans (target ≤ 10 s).

Run: python benchmarks/simulate_speed.py [REQUESTS]  — prints a markdown table, one row per plan: Poisson
arrivals at the plan's goodput with the class's fixed ISL/OSL, plus one replayed trace whose ISL/OSL vary per
request (lognormal), which defeats most of the iteration-time memo. `step() calls` counts the distinct
iteration shapes the perf model had to evaluate (each ~50-100 µs); the rest came from the memo.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import planner.capacity.estimate as estimate
from planner.render.report import result_json
from planner.search.optimize import optimize
from planner.search.scenario import build_request
from planner.simulate import simulate_plan

PLANS = [  # label, model, slo, workload, gpus, mode
    ("llama-3.1-70b agg", "llama-3.1-70b", "ttft=2s,tpot=50ms", "isl=2048,osl=256", "h100_sxm:8", "agg"),
    ("llama-3.1-70b disagg", "llama-3.1-70b", "ttft=2s,tpot=50ms", "isl=2048,osl=256", "h100_sxm:8", "disagg"),
    ("llama-3.1-8b agg", "llama-3.1-8b", "ttft=500ms,tpot=20ms", "isl=1024,osl=512", "h100_sxm:8", "agg"),
    ("qwen3-30b-a3b auto", "qwen3-30b-a3b", "ttft=1s,tpot=30ms", "isl=1024,osl=256", "h100_sxm:8", "auto"),
]

_calls = [0]
_step = estimate.Setup.step


def _counted_step(self, shape):
    _calls[0] += 1
    return _step(self, shape)


def _row(label, doc, requests, trace=None):
    plan = doc["plans"][0]
    rate = plan["goodput_rps"]
    _calls[0] = 0
    t0 = time.perf_counter()
    r = simulate_plan(doc, duration_s=requests / rate, seed=0, trace=trace)
    wall = time.perf_counter() - t0
    iters = sum(i.iterations for i in r.instances)
    inst = " + ".join(f"{i['count']}×{i['role']} TP{i['tp']}" + (f"PP{i['pp']}" if i["pp"] > 1 else "")
                      + (f"DP{i['dp']}" if i["dp"] > 1 else "") for i in plan["instances"])
    print(f"| {label} | {inst} | {r.rate_rps:.2f} | {r.requests} | {iters} | {_calls[0]} | {wall:.2f} | "
          f"{wall / max(iters, 1) * 1e6:.1f} | {r.attainment:.3f} |", flush=True)


def main(requests: int = 100_000) -> None:
    estimate.Setup.step = _counted_step
    print("| plan | instances | req/s | requests | iterations | step() calls | wall s | µs / iteration | attainment |")
    print("|---|---|---|---|---|---|---|---|---|")
    docs = {}
    for label, model, slo, wl, gpus, mode in PLANS:
        req = build_request(model, slo=slo, workload=wl, gpus=gpus, mode=mode)
        docs[label] = doc = result_json(optimize(req), req)
        _row(label, doc, requests)
    # varied lengths: lognormal ISL/OSL around the class means, Poisson arrivals at 90% of the plan's goodput
    doc = docs["llama-3.1-8b agg"]
    rng = np.random.default_rng(1)
    rate = 0.9 * doc["plans"][0]["goodput_rps"]
    t = np.cumsum(rng.exponential(1 / rate, requests))
    isl = np.clip(rng.lognormal(np.log(1024) - 0.18, 0.6, requests), 16, 8192).astype(int)
    osl = np.clip(rng.lognormal(np.log(512) - 0.18, 0.6, requests), 2, 4096).astype(int)
    _row("llama-3.1-8b agg, lognormal trace", doc, requests, list(zip(t.tolist(), isl.tolist(), osl.tolist())))
    estimate.Setup.step = _step


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
