"""What a simulation measures, and the result it returns.

TTFT = first token − arrival; TPOT = (finish − first token) / (osl − 1) (0 for osl = 1); a request attains the
SLO when it meets both of its class's (DistServe's goodput definition). Percentiles are the inverted-CDF ones
(a value some request actually saw). Goodput = measured requests meeting both SLOs per second of the measured
arrival window; utilisation = busy (iterating) time over that window (a decode keeps an engine busy for its
whole life).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from planner.simulate.engine import Engine, SimState
from planner.simulate.plan_io import SimClass

_INF = float("inf")


@dataclass
class ClassResult:
    name: str
    rate_rps: float  # offered arrival rate of the class
    requests: int  # measured requests (after warm-up)
    completed: int
    slo: dict[str, float]  # {"ttft_ms", "tpot_ms", "percentile"}
    ttft_ms: dict[str, float]  # {"p50", "p90", "p99"}
    tpot_ms: dict[str, float]
    ttft_attainment: float  # fraction of measured requests meeting the TTFT SLO
    tpot_attainment: float
    attainment: float  # fraction meeting both
    goodput_rps: float  # requests meeting both SLOs per second of the measured window


@dataclass
class InstanceResult:
    name: str  # e.g. "agg h100_sxm TP2·PP2 #1"
    role: str
    gpu: str
    group: int  # index of the plan's instance group
    utilization: float  # busy (iterating) fraction of the measured window
    requests: int  # requests routed to it (whole run)
    iterations: int
    mean_decode_batch: float  # decode sequences per iteration, time-weighted over busy time
    kv_occupancy: float  # reserved KV / KV capacity, time-weighted over the measured window


@dataclass
class SimResult:
    model: str
    plan_rank: int
    router: str  # least_work | round_robin | random
    rate_rps: float  # offered load (all classes)
    duration_s: float  # arrival window simulated
    seed: int
    requests: int  # arrivals simulated (warm-up included)
    measured: int  # arrivals counted in the statistics
    completed: int  # measured requests finished
    dropped: int  # measured requests never finished: KV too small for them, or still running at the horizon
    ttft_ms: dict[str, float]  # {"p50", "p90", "p99"} over measured requests (unfinished count as inf)
    tpot_ms: dict[str, float]
    ttft_attainment: float
    tpot_attainment: float
    attainment: float  # fraction of measured requests meeting both SLOs
    goodput_rps: float
    predicted_goodput_rps: float  # the plan's analytical goodput, for comparison
    predicted: dict[str, float] = field(default_factory=dict)  # the plan's p-th percentile {"ttft_ms", "tpot_ms"}
    per_class: dict[str, ClassResult] = field(default_factory=dict)
    instances: list[InstanceResult] = field(default_factory=list)
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["per_class"] = {k: asdict(v) for k, v in self.per_class.items()}
        return d


@dataclass(frozen=True)
class Measured:
    """The statistics of one run over its measured requests (the SimResult fields a run measures)."""
    measured: int
    completed: int
    ttft_ms: dict[str, float]
    tpot_ms: dict[str, float]
    ttft_attainment: float
    tpot_attainment: float
    attainment: float
    goodput_rps: float
    per_class: dict[str, ClassResult]
    instances: list[InstanceResult]


def percentiles_ms(x: np.ndarray) -> dict[str, float]:
    """p50 / p90 / p99 of durations in seconds, in ms."""
    if not len(x):
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0}
    v = np.percentile(x, [50, 90, 99], method="inverted_cdf") * 1e3
    return {"p50": float(v[0]), "p90": float(v[1]), "p99": float(v[2])}


def fraction(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else 0.0


def measure(sim: SimState, engines: list[Engine], classes: list[SimClass], rates: dict[str, float],
            arrival: np.ndarray, osl: np.ndarray, cls: np.ndarray, n_warm: int) -> Measured:
    """Latencies, SLO attainment and goodput of the requests after the first `n_warm`, per class and overall,
    and each instance's utilisation over the measured window [sim.window_start_s, sim.window_end_s]."""
    first = np.asarray(sim.first_token_s[n_warm:], dtype=float)
    fin = np.asarray(sim.finish_s[n_warm:], dtype=float)
    osl_m, cls_m = osl[n_warm:], cls[n_warm:]
    ttft = first - arrival[n_warm:]
    with np.errstate(invalid="ignore"):
        tpot = np.where(osl_m > 1, (fin - first) / np.maximum(osl_m - 1, 1), 0.0)
    done = np.isfinite(fin)
    tpot = np.where(done, tpot, _INF)
    ok_ttft = ttft <= np.array([c.ttft_s for c in classes])[cls_m] * (1 + 1e-9)
    ok_tpot = tpot <= np.array([c.tpot_s for c in classes])[cls_m] * (1 + 1e-9)
    ok = ok_ttft & ok_tpot
    window = sim.window_end_s - sim.window_start_s
    if window <= 0:  # a trace whose measured requests all arrive at once: their completion span instead
        window = max(float(np.max(fin[done])) - sim.window_start_s if done.any() else 0.0, 1e-9)
    per_class = {}
    for ci, c in enumerate(classes):
        sel = cls_m == ci
        per_class[c.name] = ClassResult(
            c.name, float(rates.get(c.name, 0.0)), int(sel.sum()), int(done[sel].sum()),
            {"ttft_ms": c.ttft_s * 1e3, "tpot_ms": c.tpot_s * 1e3, "percentile": c.percentile},
            percentiles_ms(ttft[sel]), percentiles_ms(tpot[sel & (osl_m > 1)]), fraction(ok_ttft[sel]),
            fraction(ok_tpot[sel]), fraction(ok[sel]), float(ok[sel].sum()) / window)
    instances = [InstanceResult(e.name, e.role.name.lower(), e.gpu_name, e.group, min(1.0, e.busy_s / window),
                                e.routed, e.iterations, e.decode_seq_s / e.busy_all_s if e.busy_all_s else 0.0,
                                e.kv_token_s / (window * e.kv_cap) if e.kv_cap else 0.0) for e in engines]
    return Measured(len(ok), int(done.sum()), percentiles_ms(ttft), percentiles_ms(tpot[osl_m > 1]),
                    fraction(ok_ttft), fraction(ok_tpot), fraction(ok), float(ok.sum()) / window, per_class,
                    instances)
