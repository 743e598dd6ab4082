"""What the one-shot subcommands compute (estimate, model show, simulate, calibrate, experts) from parsed flag
values. cli.py parses the flags, calls one of these, and prints the result through planner/render. Every check
of a flag value happens here before any work, and its error names the flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from planner.core.bounds import (
    MAX_BATCH,
    MAX_CHUNK_TOKENS,
    MAX_DURATION_S,
    MAX_GPUS_PER_TYPE,
    MAX_RATE_RPS,
    MAX_SEED,
    MAX_SIM_REQUESTS,
    MAX_TIME_LIMIT_S,
    MAX_TOKENS,
    MAX_ZIPF_S,
    bounded,
    check_context,
)
from planner.core.errors import PlannerInputError

if TYPE_CHECKING:  # planner.capacity.estimate pulls in the performance model; `planner --help` does not need it
    from planner.capacity.estimate import Estimate, Setup
    from planner.core.workload import Slo

CALIBRATE_HELP = """Fit efficiencies and engine overheads to your own measurements; use with --calibration.

CSV, one row per measured run (an empty cell: not measured):
  required  model, gpu (planner hw list), tp, isl, osl (tokens)
  measured  one or more means: ttft_ms, tpot_ms (ms),
            output_tokens_per_s_per_gpu
  load      concurrency (or batch): closed loop; rate: open loop, req/s;
            neither: offline max throughput; mode (concurrency, rate or
            offline) says it explicitly
  optional  engine (vllm, sglang, trtllm; default vllm), dtype and
            kv_dtype (default bf16), pp, ep, dp (default 1), id;
            other columns are ignored
  long form metric and value columns instead of the metric columns

Example:
  model,gpu,engine,tp,isl,osl,rate,ttft_ms,tpot_ms
  llama-3.1-8b,h100_sxm,trtllm,1,467,256,32,50,19
"""
MODEL_SHOW_DTYPES = ("bf16", "fp8", "fp4")
MODEL_SHOW_CONTEXT = 4096  # tokens of one sequence's KV that `model show`'s fewest-GPU count must also hold


def given(flag: str, value, lo: float, hi: float, **kw) -> None:
    """A numeric flag, when given, is finite and within planner.core.bounds."""
    if value is not None:
        bounded(value, flag, lo, hi, **kw)


def writable(path: Path | None, flag: str) -> None:
    """An output file must be creatable or overwritable; checked before the work, not after it."""
    if path is None:
        return
    if path.is_dir():
        raise PlannerInputError(f"{flag}: '{path}' is a folder; give a file name")
    if not path.parent.is_dir():
        raise PlannerInputError(f"{flag}: folder '{path.parent}' does not exist")
    existed = path.exists()
    try:  # opening for append is the only check that also holds for root, read-only mounts and /proc
        with path.open("a"):
            pass
    except OSError as e:
        raise PlannerInputError(f"{flag}: '{path}' is not writable ({e.strerror})") from None
    if not existed:
        path.unlink()


@dataclass(frozen=True)
class EstimateRun:
    setup: Setup
    isl: int
    osl: int
    estimate: Estimate
    slo: Slo | None
    goodput_rps: float | None  # under `slo`, when one is given


def instance_setup(model: str, gpu: str, tp: int, pp: int, ep: int, dp: int, engine: str, dtype: str,
                   kv_dtype: str, chunk: int | None, calibration: Path | None) -> Setup:
    """The instance `planner estimate` describes: GPU and engine profile (calibrated when asked), parallelism."""
    from planner.core.model import dtype_bytes, load_model
    from planner.core.parallel import ParallelConfig, check_parallel
    from planner.instance import InstanceBuilder, Levers

    m = load_model(model)
    for flag, d in (("--dtype", dtype), ("--kv-dtype", kv_dtype)):
        dtype_bytes(d, flag)
    cal = None
    if calibration:
        from planner.search.calibrate import load_calibration

        cal = load_calibration(calibration)
    builder = InstanceBuilder(m, engine, dtype, kv_dtype, Levers(calibration=cal))
    par = ParallelConfig(tp, pp, ep, dp)
    check_parallel(m, par, builder.gpu(gpu).scaleup_domain_gpus, dtype=dtype)
    return builder.build(gpu, par, chunk or 0)


def estimate(model: str, gpu: str, *, tp: int, pp: int, ep: int, dp: int, isl: int, osl: int, batch: float | None,
             rate: float | None, chunk: int | None, dtype: str, kv_dtype: str, engine: str, slo: str | None,
             calibration: Path | None) -> EstimateRun:
    """One instance at a concurrency (--batch), an arrival rate (--rate) or offline max batch (neither)."""
    from planner.capacity import estimate as est
    from planner.core.workload import parse_slo

    if batch is not None and rate is not None:
        raise PlannerInputError("--batch/--rate: give one of them, not both")
    for flag, v in (("--isl", isl), ("--osl", osl)):
        bounded(v, flag, 1, MAX_TOKENS, unit=" tokens")
    for flag, v in (("--tp", tp), ("--pp", pp), ("--ep", ep), ("--dp", dp)):
        bounded(v, flag, 1, MAX_GPUS_PER_TYPE)
    given("--batch", batch, 1, MAX_BATCH)
    given("--rate", rate, 0, MAX_RATE_RPS, lo_open=True, unit=" req/s")
    given("--chunk", chunk, 1, MAX_CHUNK_TOKENS, unit=" tokens")
    the_slo = parse_slo(slo) if slo is not None else None
    s = instance_setup(model, gpu, tp, pp, ep, dp, engine, dtype, kv_dtype, chunk, calibration)
    check_context(s.model, isl, osl, "--isl/--osl")
    if rate is not None:
        e = est.at_rate(s, isl, osl, rate)
    elif batch is not None:
        e = est.at_concurrency(s, isl, osl, batch)
    else:
        e = est.offline(s, isl, osl)
    goodput = None
    if the_slo is not None:
        from planner.capacity.serving import collocated_capacity
        from planner.core.workload import RequestClass

        goodput = collocated_capacity(s, RequestClass("estimate", isl, osl, 0.0, the_slo)).rate_rps
    return EstimateRun(s, isl, osl, e, the_slo, goodput)


def model_facts(model: str, engine: str) -> dict:
    """Sizes of a model and, per bundled GPU type and weight dtype, the fewest GPUs that hold it."""
    import hwdb
    from planner.core.model import load_model
    from planner.perf.memory import min_gpus_to_hold

    m = load_model(model)
    eng = hwdb.load_engine(engine)
    fit: dict[str, dict] = {}
    for g in hwdb.list_gpus():
        fit[g.name] = {}
        for d in MODEL_SHOW_DTYPES:
            r = min_gpus_to_hold(m, g, d, eng, context_tokens=MODEL_SHOW_CONTEXT)
            fit[g.name][d] = None if r is None else {"gpus": r[0], "config": r[1].label()}
    return dict(name=m.name, hf_id=m.hf_id, params_total=m.total_params, params_active=m.active_params,
                moe=m.is_moe, mla=m.is_mla, layers=m.num_layers, kv_bytes_per_token_bf16=m.kv_bytes_per_token("bf16"),
                kv_bytes_per_token_fp8=m.kv_bytes_per_token("fp8"),
                weights_gb={d: m.weight_bytes(d) / 1e9 for d in MODEL_SHOW_DTYPES}, min_gpus=fit, source=m.source)


def simulate(plan: Path, *, plan_rank: int, rate: float | None, duration_s: float, seed: int, trace: Path | None,
             router: str, calibration: Path | None, arrival: str | None):
    """`planner simulate`: the flags checked, then the discrete-event run (planner.simulate.SimResult)."""
    from planner.simulate import load_plan_json, load_trace_csv, simulate_plan

    given("--seed", seed, 0, MAX_SEED)
    given("--rate", rate, 0, MAX_RATE_RPS, lo_open=True, unit=" req/s")
    given("--duration-s", duration_s, 1, MAX_DURATION_S, unit=" s")
    if rate is not None and rate * duration_s > MAX_SIM_REQUESTS:
        raise PlannerInputError(f"--rate × --duration-s: {rate * duration_s:,.0f} requests to simulate, at most "
                                f"{MAX_SIM_REQUESTS:,} (shorten --duration-s)")
    cal = None
    if calibration:
        from planner.search.calibrate import load_calibration

        cal = load_calibration(calibration)
    arrival_cv = None
    if arrival is not None:
        from planner.core.workload import parse_arrival

        a = parse_arrival(arrival, "--arrival")
        if a is not None and a.kind == "trace":
            raise PlannerInputError("--arrival: give a trace with --trace (arrival_s,isl,osl[,class])")
        arrival_cv = 1.0 if a is None else a.cv
    return simulate_plan(load_plan_json(plan), rank=plan_rank, rate_rps=rate, duration_s=duration_s, seed=seed,
                         trace=load_trace_csv(trace) if trace else None, calibration=cal, router=router,
                         arrival_cv=arrival_cv)


def calibrate(measurements: Path, out: Path) -> dict:
    """Fit the constants to the measured runs, write the calibration YAML to `out`; the fit's summary."""
    from planner.search.calibrate import fit, load_points

    points = load_points(measurements)
    cal, report = fit(points, f"{measurements.name} ({len(points)} points)")
    out.write_text(cal.to_yaml())
    return {"out": str(out), **report, "gpus": cal.gpus, "engines": cal.engines}


def experts(model: str, *, ep: int, stats: Path | None, zipf: float, replicate: int, seed: int,
            time_limit_s: float) -> dict:
    """One MoE layer's experts placed on `ep` ranks (CP-SAT, solvers.place_experts) against round-robin."""
    from planner.core.model import load_model
    from solvers import ExpertProblem, load_expert_counts_csv, place_experts, zipf_loads

    given("--seed", seed, 0, MAX_SEED)
    given("--zipf", zipf, 0, MAX_ZIPF_S)
    given("--time-limit", time_limit_s, 0.1, MAX_TIME_LIMIT_S, unit=" s")
    m = load_model(model)
    if not m.is_moe:
        raise PlannerInputError(f"{m.name}: not a MoE model (no experts to place)")
    if m.num_experts % ep:
        raise PlannerInputError(f"--ep: {ep} must divide the {m.num_experts} experts")
    given("--replicate", replicate, 0, m.num_experts - m.num_experts // ep,
          unit=f" (a rank holds at most all {m.num_experts} experts)")
    loads = tuple(load_expert_counts_csv(stats)) if stats else zipf_loads(m.num_experts, s=zipf, seed=seed)
    if len(loads) != m.num_experts:
        raise PlannerInputError(f"--stats: {len(loads)} experts in the file, {m.name} has {m.num_experts}")
    prob = ExpertProblem(loads, ep, m.num_experts // ep + replicate, replicate=replicate > 0)
    res = place_experts(prob, time_limit_s=time_limit_s, seed=seed)
    return {"model": m.name, "ep": ep, "experts": m.num_experts, "imbalance": res.imbalance,
            "round_robin_imbalance": res.round_robin_imbalance, "status": res.status, "gap": res.gap,
            "time_s": res.time_s, "safety_stop": res.safety_stop, "rank_loads": list(res.rank_loads),
            "placement": [list(r) for r in res.placement]}
