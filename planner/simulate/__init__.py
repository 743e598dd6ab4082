"""`planner simulate`: a discrete-event simulation of one plan, to check the analytical serving model
(docs/architecture.md "Data flow").

  plan_io.py   PLAN.json -> request classes and instance groups (each instance's Setup built in one place)
  arrivals.py  Poisson / gamma renewal arrivals, replayed traces, the trace CSV reader
  router.py    plan shares across groups, least-work / round-robin / random within a group; engines wired up
  engine.py    one instance: continuous batching, chunked prefill, KV admission, P/D hand-off; the event loop
  metrics.py   percentiles, SLO attainment, goodput, per-class and per-instance results
  run.py       simulate_plan: the orchestration

Speed (benchmarks/simulate_speed.py, 2 cores under load): 100k requests in 1.4-3 s at fixed lengths, 12.5 s
with lognormal lengths (every iteration shape new to the memo of step times).
"""

from planner.simulate.arrivals import load_trace_csv
from planner.simulate.metrics import ClassResult, InstanceResult, SimResult
from planner.simulate.plan_io import load_plan_json
from planner.simulate.router import ROUTERS
from planner.simulate.run import WARMUP_FRACTION, simulate_plan

__all__ = ["ROUTERS", "WARMUP_FRACTION", "ClassResult", "InstanceResult", "SimResult", "load_plan_json",
           "load_trace_csv", "simulate_plan"]
