"""Measured serving points -> predictions, and a least-squares fit of efficiencies / engine overheads to them.

CSV (one row per run; empty cells = not measured; other columns ignored), columns:
  model, gpu, engine, dtype, kv_dtype, tp, pp, ep, dp, isl, osl, concurrency (alias batch), rate (req/s), mode,
  id, ttft_ms, tpot_ms, output_tokens_per_s_per_gpu   (required: model, gpu, tp, isl, osl and one measured mean;
  engine vllm, dtype/kv_dtype bf16, pp/ep/dp 1 by default; mode = concurrency | offline | rate, by default rate
  when a rate is given, else concurrency when a concurrency is given, else offline)
or the long form: model, gpu, tp, pp, ep, isl, osl, batch | rate, metric, value.
The README's "Calibrating to your measurements" and `planner calibrate --help` document the same format.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from planner.core.errors import InfeasibleError, PlannerInputError
from planner.core.inputs import read_csv, read_document, shown_value
from planner.core.parallel import ParallelConfig

MAX_POINTS = 10_000  # CSV rows: a fit costs ~40 ms per row and evaluation (10k rows: minutes, 10^6: half a day)
METRICS = ("ttft_ms", "tpot_ms", "output_tokens_per_s_per_gpu")
# The constants a fit may move, with the bounds that keep them physical.
ENGINE_PARAMS = {"step_overhead_ms": (0.05, 60.0), "per_seq_overhead_us": (0.0, 400.0),
                 "kernel_latency_exposed": (0.0, 1.0)}
GPU_PARAMS = {"memory": (0.3, 1.0), "gemm": (0.2, 1.0), "attention": (0.1, 1.0), "grouped_gemm_half_tokens": (1.0, 4096.0)}


@dataclass(frozen=True)
class MeasuredPoint:
    line: int
    id: str
    model: str
    gpu: str
    engine: str
    dtype: str
    kv_dtype: str
    par: ParallelConfig
    isl: int
    osl: int
    mode: str  # concurrency | offline | rate
    load: float  # concurrency or rate (0 for offline)
    metrics: dict  # metric -> measured value


def _int(row, key, line, default=None):
    v = (row.get(key) or "").strip()
    if not v:
        if default is None:
            raise PlannerInputError(f"line {line}: missing '{key}'")
        return default
    try:
        x = float(v)
    except ValueError:
        raise PlannerInputError(f"line {line}: field '{key}' is not a number: {shown_value(v)}") from None
    if not 0 < x <= 2**24 or x != int(x):
        raise PlannerInputError(f"line {line}: field '{key}' must be a positive whole number, got {shown_value(v)}")
    return int(x)


def _float(row, key, line):
    v = (row.get(key) or "").strip()
    if not v:
        return None
    try:
        x = float(v)
    except ValueError:
        raise PlannerInputError(f"line {line}: field '{key}' is not a number: {shown_value(v)}") from None
    if not x > 0 or math.isinf(x):
        raise PlannerInputError(f"line {line}: field '{key}' must be positive, got {shown_value(v)}")
    return x


def _names(row: dict, line: int, resolved: dict) -> tuple[str, str, str, str, str]:
    """(model, gpu, engine, dtype, kv_dtype) of a row, GPU and engine by their canonical names (an alias such as
    h100 or vLLM would otherwise calibrate a name nothing looks up); each checked once per distinct value."""
    import hwdb
    from planner.core.model import dtype_bytes, load_model

    out = []
    for key, default, canonical in (("model", None, lambda v: load_model(v) and v),  # as written: predict loads it
                                    ("gpu", None, lambda v: hwdb.load_gpu(v).name),
                                    ("engine", "vllm", lambda v: hwdb.load_engine(v).name),
                                    ("dtype", "bf16", lambda v: dtype_bytes(v) and v),
                                    ("kv_dtype", "bf16", lambda v: dtype_bytes(v) and v)):
        v = (row.get(key) or "").strip() or default
        if v is None:
            raise PlannerInputError(f"line {line}: missing '{key}'")
        if (key, v) not in resolved:
            try:
                resolved[key, v] = canonical(v)
            except (PlannerInputError, hwdb.HwdbError) as e:
                raise PlannerInputError(f"line {line}: field '{key}': {str(e).splitlines()[0]}") from None
        out.append(resolved[key, v])
    return tuple(out)


def _check_parallel(names: tuple, par: ParallelConfig, line: int, resolved: dict) -> None:
    import hwdb
    from planner.core.model import load_model
    from planner.core.parallel import check_parallel

    model, gpu = names[:2]
    if ("par", model, gpu, par) not in resolved:
        try:
            check_parallel(load_model(model), par, hwdb.load_gpu(gpu).scaleup_domain_gpus)
        except PlannerInputError as e:
            raise PlannerInputError(f"line {line}: {e}") from None
        resolved["par", model, gpu, par] = True


def load_points(path) -> list[MeasuredPoint]:
    """Parse a measurements CSV; bad rows are reported by line number (PlannerInputError)."""
    if not Path(path).is_file():
        raise PlannerInputError(f"{path}: measurements file not found")
    records = read_csv(path, MAX_POINTS)
    columns = [c.strip() for c in next(records, (0, []))[1]]
    for need in ("model", "gpu", "tp", "isl", "osl"):
        if need not in columns:
            raise PlannerInputError(f"{path}: missing column '{need}'")
    long_form = "metric" in columns
    points: dict[tuple, MeasuredPoint] = {}
    resolved: dict = {}
    for i, cells in records:
        if len(cells) > len(columns):
            raise PlannerInputError(f"line {i}: {len(cells)} cells, more than the {len(columns)} columns")
        row = dict(zip(columns, cells))
        par = ParallelConfig(_int(row, "tp", i), _int(row, "pp", i, 1), _int(row, "ep", i, 1), _int(row, "dp", i, 1))
        conc = _float(row, "concurrency", i) or _float(row, "batch", i)
        rate = _float(row, "rate", i)
        mode = (row.get("mode") or "").strip() or ("rate" if rate else ("concurrency" if conc else "offline"))
        if mode not in ("concurrency", "offline", "rate"):
            raise PlannerInputError(f"line {i}: field 'mode' must be concurrency, offline or rate, "
                                    f"got {shown_value(mode)}")
        if mode == "concurrency" and not conc:
            raise PlannerInputError(f"line {i}: mode 'concurrency' needs a 'concurrency' value")
        if mode == "rate" and not rate:
            raise PlannerInputError(f"line {i}: mode 'rate' needs a 'rate' value (req/s)")
        if long_form:
            metric = (row.get("metric") or "").strip()
            if metric not in METRICS:
                raise PlannerInputError(f"line {i}: field 'metric' must be one of {', '.join(METRICS)}, "
                                        f"got {shown_value(metric)}")
            value = _float(row, "value", i)
            if value is None:
                raise PlannerInputError(f"line {i}: missing 'value'")
            metrics = {metric: value}
        else:
            metrics = {m: v for m in METRICS if (v := _float(row, m, i)) is not None}
            if not metrics:
                raise PlannerInputError(f"line {i}: no measured value (need one of {', '.join(METRICS)})")
        names = _names(row, i, resolved)
        _check_parallel(names, par, i, resolved)
        point = MeasuredPoint(i, (row.get("id") or f"line{i}").strip(), *names, par,
                              _int(row, "isl", i), _int(row, "osl", i), mode,
                              conc if mode == "concurrency" else (rate or 0.0), metrics)
        key = (point.model, point.gpu, point.engine, point.dtype, point.kv_dtype, point.par, point.isl, point.osl,
               point.mode, point.load) if long_form else (i,)
        if key in points:
            points[key] = dataclasses.replace(points[key], metrics={**points[key].metrics, **metrics})
        else:
            points[key] = point
    if not points:
        raise PlannerInputError(f"{path}: no measurement rows")
    return list(points.values())


# ---- calibration overrides -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Calibration:
    """Overrides of hwdb efficiencies and engine overheads (what `planner calibrate` writes)."""
    gpus: dict = field(default_factory=dict)  # gpu -> {param: value}; gemm as {dtype: value}
    engines: dict = field(default_factory=dict)  # engine -> {param: value}
    fitted_on: str = ""

    def apply_gpu(self, gpu):
        import hwdb

        over = self.gpus.get(gpu.name)
        if not over:
            return gpu
        changes = dict(over)
        if "gemm" in changes:
            changes["gemm"] = {**gpu.efficiency.gemm, **changes["gemm"]}
        return hwdb.with_efficiency(gpu, **changes, fitted_on=f"calibrated: {self.fitted_on}")

    def apply_engine(self, engine):
        over = self.engines.get(engine.name)
        return dataclasses.replace(engine, **over, fitted_on=f"calibrated: {self.fitted_on}") if over else engine

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump({"fitted_on": self.fitted_on, "gpus": self.gpus, "engines": self.engines},
                              sort_keys=True)


def load_calibration(path) -> Calibration:
    """A calibration YAML: every GPU and engine named must exist (aliases resolve to the canonical name, which is
    what apply_gpu / apply_engine look up) and every constant be a number within its physical bounds."""
    import hwdb

    if not Path(path).is_file():
        raise PlannerInputError(f"--calibration: file not found: {path}")
    data = read_document(path)
    if not isinstance(data, dict):
        raise PlannerInputError(f"{path}: expected a mapping with 'gpus' and/or 'engines'")
    unknown = sorted(map(str, set(data) - {"gpus", "engines", "fitted_on"}))
    if unknown:
        raise PlannerInputError(f"{path}: unknown field {shown_value(unknown[0])} (expected gpus, engines, fitted_on)")
    out: dict = {"gpus": {}, "engines": {}}
    for section, allowed, lookup in (("gpus", GPU_PARAMS, hwdb.load_gpu), ("engines", ENGINE_PARAMS, hwdb.load_engine)):
        entries = data.get(section) or {}
        if not isinstance(entries, dict):
            raise PlannerInputError(f"{path}: field '{section}' must map a name to its constants")
        for name, params in entries.items():
            where = f"{section}.{shown_value(str(name))[1:-1]}"
            try:
                canonical = lookup(str(name)).name
            except hwdb.HwdbError as e:
                raise PlannerInputError(f"{path}: field '{where}': {e}") from None
            if not isinstance(params, dict):
                raise PlannerInputError(f"{path}: field '{where}' must map constants to values")
            for k, v in params.items():
                if k not in allowed:
                    raise PlannerInputError(f"{path}: field '{where}.{shown_value(str(k))[1:-1]}' is not a "
                                            "calibratable constant")
                if k == "gemm" and not (isinstance(v, dict) and v and all(x in hwdb.DTYPES for x in v)):
                    raise PlannerInputError(f"{path}: field '{where}.gemm' must map dtypes "
                                            f"({', '.join(hwdb.DTYPES)}) to efficiencies")
                vals = v.values() if k == "gemm" else [v]
                lo, hi = allowed[k]
                if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and lo <= x <= hi for x in vals):
                    raise PlannerInputError(f"{path}: field '{where}.{k}' must lie in [{lo}, {hi}]")
            merged = out[section].setdefault(canonical, {})
            merged.update({k: ({**merged.get(k, {}), **v} if k == "gemm" else v) for k, v in params.items()})
    return Calibration(out["gpus"], out["engines"], str(data.get("fitted_on", path)))


# ---- prediction ------------------------------------------------------------------------------------------

def predict(point: MeasuredPoint, calibration: Calibration | None = None) -> dict:
    """Our estimate for a measured point: {metric: value}; raises InfeasibleError if the config does not fit."""
    from planner.capacity import estimate
    from planner.core.model import load_model
    from planner.instance import InstanceBuilder, Levers

    setup = InstanceBuilder(load_model(point.model), point.engine, point.dtype, point.kv_dtype,
                            Levers(calibration=calibration)).build(point.gpu, point.par)
    if point.mode == "offline":
        e = estimate.offline(setup, point.isl, point.osl)
    elif point.mode == "rate":
        e = estimate.at_rate(setup, point.isl, point.osl, point.load)
    else:
        e = estimate.at_concurrency(setup, point.isl, point.osl, point.load)
    return {"ttft_ms": e.ttft_ms, "tpot_ms": e.tpot_ms, "output_tokens_per_s_per_gpu": e.tokens_per_s_per_gpu}


def log_errors(points: list[MeasuredPoint], calibration: Calibration | None = None) -> list[float]:
    """log(predicted / measured) for every (point, metric); a config we call infeasible counts as log(10)."""
    out = []
    for p in points:
        try:
            pred = predict(p, calibration)
        except InfeasibleError:
            out += [math.log(10.0)] * len(p.metrics)
            continue
        out += [math.log(max(pred[m], 1e-9) / v) for m, v in sorted(p.metrics.items())]
    return out


# ---- fitting ---------------------------------------------------------------------------------------------

Param = tuple[str, str, str, str]  # (section, gpu or engine name, constant, dtype for gemm else '')


def informed_parameters(points: list[MeasuredPoint]) -> list[Param]:
    """The constants these points can inform: each engine's overheads, each GPU's memory and GEMM efficiency
    for the dtypes measured, and its grouped-GEMM efficiency when a MoE model was measured."""
    import hwdb
    from planner.core.model import load_model
    from planner.perf.ops import compute_dtype

    params = set()
    for p in points:
        params.update({("engines", p.engine, k, "") for k in ENGINE_PARAMS})
        math_dtype = compute_dtype(p.dtype, hwdb.load_gpu(p.gpu))
        params.update({("gpus", p.gpu, "memory", ""), ("gpus", p.gpu, "gemm", math_dtype)})
        if load_model(p.model).is_moe:
            params.add(("gpus", p.gpu, "grouped_gemm_half_tokens", ""))
    return sorted(params)


def _baseline(param, gpus, engines) -> float:
    section, name, key, dtype = param
    if section == "engines":
        return getattr(engines[name], key)
    eff = gpus[name].efficiency
    return eff.gemm_for(dtype) if key == "gemm" else getattr(eff, key)


def _calibration(params, values, fitted_on: str) -> Calibration:
    gpus: dict = {}
    engines: dict = {}
    for (section, name, key, dtype), v in zip(params, values):
        v = float(round(v, 4))
        if section == "engines":
            engines.setdefault(name, {})[key] = v
        elif key == "gemm":
            gpus.setdefault(name, {}).setdefault("gemm", {})[dtype] = v
        else:
            gpus.setdefault(name, {})[key] = v
    return Calibration(gpus, engines, fitted_on)


def fit(points: list[MeasuredPoint], fitted_on: str, params: list[Param] | None = None,
        prior_weight: float = 0.05) -> tuple[Calibration, dict]:
    """Least squares on log(predicted/measured) over all points and metrics (scipy, soft-L1 loss), with a weak
    pull towards the hwdb values so constants the points barely inform stay put."""
    import numpy as np
    from scipy.optimize import least_squares

    import hwdb

    params = params if params is not None else informed_parameters(points)
    gpus = {p.gpu: hwdb.load_gpu(p.gpu) for p in points}
    engines = {p.engine: hwdb.load_engine(p.engine) for p in points}
    x0 = np.array([_baseline(q, gpus, engines) for q in params])
    bounds = [(ENGINE_PARAMS if q[0] == "engines" else GPU_PARAMS)[q[2]] for q in params]
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    x0 = np.clip(x0, lo + 1e-6, hi - 1e-6)
    scale = np.maximum(x0, 1e-3)

    def residuals(z):
        cal = _calibration(params, z * scale, fitted_on)
        r = log_errors(points, cal)
        return np.concatenate([r, prior_weight * np.log(np.maximum(z, 1e-6))])

    before = np.array(log_errors(points))
    sol = least_squares(residuals, np.ones_like(x0), bounds=(lo / scale, hi / scale), loss="soft_l1", f_scale=0.3,
                        diff_step=1e-3, max_nfev=60 * len(params))
    cal = _calibration(params, sol.x * scale, fitted_on)
    after = np.array(log_errors(points, cal))
    report = {"points": len(points), "parameters": len(params),
              "median_abs_error_before": float(np.median(np.abs(np.expm1(before)))),
              "median_abs_error_after": float(np.median(np.abs(np.expm1(after))))}
    return cal, report
