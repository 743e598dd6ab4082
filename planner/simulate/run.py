"""simulate_plan: one discrete-event run of a plan (orchestration only).

plan_io rebuilds the plan's instances, arrivals makes the requests, router wires the instances as engines, the
engine's event loop runs them and metrics measures the result. The first 10% of arrivals are warm-up, left out
of the statistics; requests unfinished max(60 s, duration) after the last arrival count as dropped (and as
misses), as do requests larger than every instance's KV.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from planner.core.errors import PlannerInputError
from planner.core.model import ModelSpec
from planner.simulate.arrivals import offered_rates, renewal_arrivals, trace_arrays
from planner.simulate.engine import SimState, run_events
from planner.simulate.metrics import SimResult, measure
from planner.simulate.plan_io import SimClass, instance_groups, plan_classes, select_plan
from planner.simulate.router import ROUTERS, RouterMode, build_engines

if TYPE_CHECKING:
    from planner.search.calibrate import Calibration

WARMUP_FRACTION = 0.10  # leading share of arrivals left out of the statistics
DRAIN_MIN_S = 60.0  # after the last arrival the simulation runs on at most max(this, duration) seconds


def _kv_tokens(model: ModelSpec, kv_dtype: str) -> Callable[[int], int]:
    """KV tokens a request of `ctx` tokens reserves (sliding-window layers capped at the window, as the
    planner's memory model counts them), memoised."""
    per_tok = model.kv_bytes_per_token(kv_dtype)
    memo: dict[int, int] = {}

    def kv_need(ctx: int) -> int:
        v = memo.get(ctx)
        if v is None:
            v = memo[ctx] = math.ceil(model.kv_bytes_per_sequence(ctx, kv_dtype) / per_tok - 1e-9) if per_tok \
                else ctx
        return v

    return kv_need


def _arrival_notes(classes: list[SimClass], arrival_cv: float | None) -> list[str]:
    if arrival_cv is None and not any(c.cv != 1.0 or c.trace_times for c in classes):
        return []
    return ["arrivals: " + ", ".join(
        f"{c.name} " + (f"trace {len(c.trace_times)} arrivals (cv {c.cv:.2f}) time-scaled"
                        if c.trace_times and arrival_cv is None else
                        f"gamma cv {c.cv if arrival_cv is None else arrival_cv:g}") for c in classes)]


def simulate_plan(plan_json: dict[str, Any], *, rank: int = 1, rate_rps: float | None = None,
                  duration_s: float = 300.0, seed: int = 0, trace: Sequence[Sequence[Any]] | None = None,
                  calibration: Calibration | None = None, router: str = "least_work",
                  arrival_cv: float | None = None) -> SimResult:
    """Simulate plan `rank` of a `planner optimize --format json` document.

    Poisson arrivals for `duration_s` seconds at `rate_rps` req/s in total (default: the plan's goodput), split
    over the classes as the plan routes them; or replay `trace` [(arrival_s, isl, osl, class or None), ...]
    (then rate and duration come from the trace; a missing class is the workload's first). `router`:
    least_work (default), round_robin or random within each instance group (groups get the plan's shares).
    Bursty classes (the workload's `arrival: gamma(cv=…)` or trace, issue 8) arrive as that renewal process
    instead of Poisson (renewal_arrivals); `arrival_cv` overrides every class's cv (1 = Poisson).
    Same inputs and seed give the same result (wall_s aside)."""
    wall0 = time.perf_counter()
    if not isinstance(plan_json, dict):
        raise PlannerInputError("plan: expected the JSON object written by `planner optimize --format json`")
    if router not in ROUTERS:
        raise PlannerInputError(f"--router: expected one of {', '.join(ROUTERS)}, got '{router}'")
    classes = plan_classes(plan_json)
    plan = select_plan(plan_json, rank)
    model, groups = instance_groups(plan_json, plan, calibration)

    if trace is not None:
        arrival, isl_arr, osl_arr, cls_arr = trace_arrays(trace, classes)
        t_end = duration = float(arrival[-1])
        span = t_end - float(arrival[0])
        offered = (len(arrival) - 1) / span if span > 0 else 0.0
        rates = {c.name: offered * float(np.mean(cls_arr == i)) for i, c in enumerate(classes)}
    else:
        if not duration_s > 0 or not math.isfinite(duration_s):
            raise PlannerInputError(f"--duration-s: must be a positive number of seconds, got {duration_s:g}")
        rates = offered_rates(plan, classes, rate_rps)
        if arrival_cv is not None and not (arrival_cv > 0 and math.isfinite(arrival_cv)):
            raise PlannerInputError(f"--arrival: the cv must be a positive number, got {arrival_cv:g}")
        arrival, cls_arr = renewal_arrivals(rates, classes, duration_s, seed, arrival_cv)
        isl_arr = np.array([c.isl for c in classes], dtype=np.int64)[cls_arr]
        osl_arr = np.array([c.osl for c in classes], dtype=np.int64)[cls_arr]
        t_end = duration = float(duration_s)
        offered = sum(rates.values())
    n = len(arrival)
    n_warm = int(n * WARMUP_FRACTION)

    # KV tokens a request reserves: its whole sequence on agg / decode instances, its prompt on a prefill one
    kv_need = _kv_tokens(model, str(plan_json.get("kv_dtype", "bf16")))
    isl, osl = isl_arr.tolist(), osl_arr.tolist()
    sim = SimState(arrival.tolist(), isl, osl, [kv_need(a + b) for a, b in zip(isl, osl)],
                   [kv_need(a) for a in isl], float(arrival[n_warm]), t_end)
    engines, entry, exits = build_engines(groups, classes, RouterMode(ROUTERS.index(router)), seed)
    horizon = t_end + max(DRAIN_MIN_S, duration)
    run_events(sim, engines, entry, exits, cls_arr.tolist(), horizon)

    m = measure(sim, engines, classes, rates, arrival, osl_arr, cls_arr, n_warm)
    notes = _arrival_notes(classes, arrival_cv) if trace is None else []
    dropped = m.measured - m.completed
    if dropped:
        notes.append(f"{dropped} measured requests did not finish: larger than every instance's KV cache, or "
                     f"still running {horizon - t_end:.0f} s after the last arrival")
    return SimResult(
        model=model.name, plan_rank=rank, router=router, rate_rps=float(offered), duration_s=duration, seed=seed,
        requests=n, measured=m.measured, completed=m.completed, dropped=dropped, ttft_ms=m.ttft_ms,
        tpot_ms=m.tpot_ms, ttft_attainment=m.ttft_attainment, tpot_attainment=m.tpot_attainment,
        attainment=m.attainment, goodput_rps=m.goodput_rps,
        predicted_goodput_rps=float(plan.get("goodput_rps") or 0.0),
        predicted={k: float(v) for k, v in (plan.get("predicted") or {}).items()},
        per_class=m.per_class, instances=m.instances, wall_s=time.perf_counter() - wall0, notes=notes)
