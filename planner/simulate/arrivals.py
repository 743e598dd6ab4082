"""Arrivals of a simulation: per request class a renewal process (Poisson, or gamma inter-arrivals of a given
coefficient of variation for bursty traffic), a class's arrival trace replayed time-scaled, or a whole request
trace (arrival_s, isl, osl[, class]) read from CSV and replayed as is. Kingman's G/G/1 approximation, which the
planner's bursty queueing model uses, takes the same c_a² = cv² (docs/architecture.md "Formulas")."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from planner.core.bounds import MAX_TOKENS
from planner.core.errors import PlannerInputError
from planner.core.inputs import read_csv, shown_value
from planner.core.vocab import Role
from planner.core.workload import MAX_TRACE_ROWS
from planner.simulate.plan_io import SimClass

TraceRow = tuple[float, int, int, str | None]  # (arrival_s, isl, osl, class or None)


def load_trace_csv(path: str | Path) -> list[TraceRow]:
    """Read a request trace: a header row naming the columns arrival_s, isl, osl and optionally class, then
    one request per row. Returns (arrival_s, isl, osl, class or None) sorted by arrival time (stable).
    Bad rows raise PlannerInputError naming the file and line."""
    if not Path(path).is_file():
        raise PlannerInputError(f"{path}: trace file not found")
    header: list[str] | None = None
    col: dict[str, int] = {}
    rows: list[TraceRow] = []
    for lineno, line in read_csv(path, MAX_TRACE_ROWS):
        if line[0].lstrip().startswith("#"):
            continue
        where = f"{path} line {lineno}"
        if header is None:
            header = [c.strip().lower() for c in line]
            unknown = [c for c in header if c not in ("arrival_s", "isl", "osl", "class")]
            if unknown:
                raise PlannerInputError(f"{where}: unknown column {shown_value(unknown[0])} "
                                        "(expected a header arrival_s,isl,osl[,class])")
            missing = [c for c in ("arrival_s", "isl", "osl") if c not in header]
            if missing:
                raise PlannerInputError(f"{where}: header lacks column '{missing[0]}' "
                                        "(expected arrival_s,isl,osl[,class])")
            if len(set(header)) != len(header):
                raise PlannerInputError(f"{where}: duplicate column in header")
            col = {c: i for i, c in enumerate(header)}
            continue
        if len(line) != len(header):
            raise PlannerInputError(f"{where}: expected {len(header)} columns ({','.join(header)}), "
                                    f"got {len(line)}")
        raw = line[col["arrival_s"]].strip()
        try:
            t = float(raw)
        except ValueError:
            t = math.nan
        if not math.isfinite(t) or t < 0:
            raise PlannerInputError(f"{where}: field 'arrival_s' must be a non-negative number of seconds, "
                                    f"got {shown_value(raw)}")
        vals = []
        for k in ("isl", "osl"):
            raw = line[col[k]].strip()
            try:
                v = float(raw)
            except ValueError:
                v = math.nan
            if not math.isfinite(v) or not 1 <= v <= MAX_TOKENS or v != int(v):
                raise PlannerInputError(f"{where}: field '{k}' must be a positive whole number of tokens "
                                        f"(at most {MAX_TOKENS}), got {shown_value(raw)}")
            vals.append(int(v))
        cls = line[col["class"]].strip() or None if "class" in col else None
        rows.append((t, vals[0], vals[1], cls))
    if header is None or not rows:
        raise PlannerInputError(f"{path}: no requests in the trace (expected a header arrival_s,isl,osl[,class] "
                                "and one row per request)")
    rows.sort(key=lambda r: r[0])
    return rows


def offered_rates(plan: dict[str, Any], classes: list[SimClass], rate_rps: float | None) -> dict[str, float]:
    """Offered rate per class: the plan's goodput (or `rate_rps`) split as the plan routes load to its entry
    (agg / prefill) instances."""
    served = {c.name: 0.0 for c in classes}
    for inst in plan.get("instances", []):
        if inst.get("role") in (Role.agg, Role.prefill):
            for s, r in (inst.get("load_rps") or {}).items():
                if s in served and isinstance(r, (int, float)):
                    served[s] += float(r)
    total = sum(served.values())
    goal = float(plan.get("goodput_rps") or 0.0) if rate_rps is None else float(rate_rps)
    if not goal > 0 or not math.isfinite(goal):
        raise PlannerInputError(f"--rate: must be a positive number, got {goal:g}" if rate_rps is not None else
                                "plan: goodput_rps is 0 (nothing to simulate); give --rate")
    if total <= 0:
        return {c.name: goal / len(classes) for c in classes}
    return {name: goal * v / total for name, v in served.items()}


def renewal_arrivals(rates: dict[str, float], classes: list[SimClass], duration_s: float, seed: int,
                     cv: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Merged arrivals of every class in [0, duration): per class a renewal process at its rate with gamma
    inter-arrival times of coefficient of variation cv (shape 1/cv², so cv = 1 is Poisson; `cv` overrides the
    classes' own), or the class's trace replayed cyclically with its gaps scaled to the class's rate (the
    bursts kept, the mean rate set). (times, class index), sorted (stable)."""
    rng = np.random.default_rng(seed)
    ts, cs = [], []
    for ci, c in enumerate(classes):
        lam = rates.get(c.name, 0.0)
        if lam <= 0:
            continue
        k_cv = c.cv if cv is None else cv
        if c.trace_times and cv is None:
            gaps = np.diff(np.asarray(c.trace_times, dtype=float))
            gaps = gaps / gaps.mean() / lam
            reps = int(duration_s / gaps.sum()) + 1
            t = np.cumsum(np.tile(gaps, reps))
            t = t[t < duration_s]
        else:
            shape = 1.0 / (k_cv * k_cv)
            n = int(lam * duration_s + 6 * k_cv * math.sqrt(lam * duration_s) + 20)

            def draw(n: int = n, shape: float = shape, lam: float = lam) -> np.ndarray:
                # cv = 1: exponential gaps, a Poisson process
                return rng.exponential(1.0 / lam, n) if shape == 1.0 else rng.gamma(shape, 1.0 / (lam * shape), n)

            t = np.cumsum(draw())
            while t[-1] < duration_s:
                t = np.concatenate([t, t[-1] + np.cumsum(draw())])
            t = t[t < duration_s]
        ts.append(t)
        cs.append(np.full(len(t), ci, dtype=np.int64))
    times, cls_index = np.concatenate(ts), np.concatenate(cs)
    order = np.argsort(times, kind="stable")
    return times[order], cls_index[order]


def trace_arrays(trace: Sequence[Sequence[Any]],
                 classes: list[SimClass]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A request trace [(arrival_s, isl, osl[, class]), ...] as sorted arrays (arrival_s, isl, osl, class
    index); a row without a class is the workload's first class."""
    by_name = {c.name: i for i, c in enumerate(classes)}
    rows = []
    for i, row in enumerate(trace):
        try:
            t, isl, osl = float(row[0]), int(row[1]), int(row[2])
        except (TypeError, ValueError, IndexError):
            raise PlannerInputError(f"trace: row {i + 1} must be (arrival_s, isl, osl[, class]), got {row!r}") from None
        if not (t >= 0 and math.isfinite(t)) or isl < 1 or osl < 1:
            raise PlannerInputError(f"trace: row {i + 1} needs arrival_s ≥ 0, isl ≥ 1 and osl ≥ 1, got {row!r}")
        name = row[3] if len(row) > 3 else None
        if name in (None, ""):
            ci = 0
        elif name in by_name:
            ci = by_name[name]
        else:
            raise PlannerInputError(f"trace: row {i + 1}: class '{name}' is not in the plan's workload "
                                    f"({', '.join(by_name)})")
        rows.append((t, isl, osl, ci))
    if not rows:
        raise PlannerInputError("trace: no requests")
    rows.sort(key=lambda r: r[0])
    arrival = np.array([r[0] for r in rows], dtype=float)
    isl_arr = np.array([r[1] for r in rows], dtype=np.int64)
    osl_arr = np.array([r[2] for r in rows], dtype=np.int64)
    cls = np.array([r[3] for r in rows], dtype=np.int64)
    return arrival, isl_arr, osl_arr, cls
