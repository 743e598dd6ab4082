"""Energy: board power of an instance at its operating point, joules per output token, and GPU power caps.

Pure functions; `planner optimize` uses them when energy is asked for (`--energy`, `--objective energy`,
`--power-cap`), so plans made without those flags are unchanged.

Power model
-----------
Board power of one GPU = idle_w + (tdp_w − idle_w) · activity, activity ∈ [0, 1]:
- idle_w / tdp_w come from hwdb (sourced per part; idle_w is the *loaded* idle of a GPU that holds a model,
  which is what an idle serving replica draws — see hwdb/loader.py).
- activity = occupancy · kernel share, both from the step model at the instance's operating point:
    kernel share = gpu_s / time_s of the iteration the instance runs (the rest of an iteration is the
                   engine's CPU time: scheduling, sampling, launches — the GPU waits);
    occupancy    = the fraction of wall time the instance has work:
                   prefill  ρ = λ · (per-prompt service time), the M/D/1 utilisation (≤ 1);
                   decode   1 − e^(−B), B = λ·osl·TPOT the mean batch (Little's law; P(batch ≥ 1) of the
                            M/G/∞ occupancy), so a busy decode pool draws near its active power;
                   agg      1 − e^(−(B + λ·T)), decodes plus the prompts arriving in an iteration.
  A linear utilisation-to-power model between idle and TDP is the standard first-order server power model
  (Fan, Weber & Barroso, "Power provisioning for a warehouse-sized computer", ISCA 2007); the split of an
  LLM deployment's power into a compute-bound prefill phase near TDP and a lighter, memory-bound decode phase
  is the measurement behind Splitwise (Patel et al., ISCA 2024), and per-phase clock control for energy under
  SLOs is VoltanaLLM's lever (2025). Known simplification: every busy kernel counts as full activity, so a
  memory-bound decode step is charged TDP while it runs; real memory-bound kernels draw somewhat less, so
  decode watts are an upper estimate.
- Instance watts = GPUs · per-GPU watts; joules per output token = watts / output tokens/s.

Power cap (`--power-cap TYPE=W`)
--------------------------------
Dynamic power P_dyn = C·V²·f and, in the DVFS range, V ∝ f, so P_dyn ∝ f³. At the board's TDP the dynamic
part is tdp_w − idle_w at the full boost clock f₀, so a cap W runs the SMs at
    f/f₀ = ((W − idle_w) / (tdp_w − idle_w))^(1/3),  floored at MIN_CLOCK_FRACTION
(below the floor V has reached its minimum and the cubic law no longer holds; we do not extrapolate).
Peak tensor FLOP/s scale with f (a fixed number of FLOPs per clock); HBM bandwidth does not (the memory clock
is separate from the SM clock), nor do NVLink / NIC bandwidths or the engine's CPU overheads. So a cap slows
compute-bound work (prefill, large-batch GEMMs) and leaves memory-bound decode nearly untouched — the
asymmetry Splitwise measured when power-capping prompt vs token machines. The capped GpuSpec carries
tdp_w = W, so its full-activity power is the cap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from planner.capacity.estimate import Setup
from planner.capacity.serving import Capacity, collocated_state, decode_iteration_s, prefill_batch
from planner.core.bounds import MAX_POWER_W, bounded
from planner.core.errors import PlannerInputError
from planner.core.vocab import Role
from planner.core.workload import RequestClass
from planner.perf.step import StepShape

MIN_CLOCK_FRACTION = 0.3  # lowest SM clock (fraction of boost) the cubic DVFS law is applied down to


# ---- power caps ----------------------------------------------------------------------------------------------

def parse_power_cap(text: str) -> dict[str, float]:
    """'h100_sxm=500,b200=700' (or '500W' values) -> {'h100_sxm': 500.0, 'b200': 700.0} (names unresolved)."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        name, sep, value = part.partition("=")
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*[wW]?\s*", value)
        if not sep or not name.strip() or not m or float(m.group(1)) <= 0:
            raise PlannerInputError(f"--power-cap: expected TYPE=WATTS like h100_sxm=500, got '{part}'")
        out[name.strip()] = bounded(m.group(1), f"--power-cap: {name.strip()}", 0, MAX_POWER_W, unit=" W")
    if not out:
        raise PlannerInputError("--power-cap: no GPU type given (e.g. --power-cap h100_sxm=500)")
    return out


def clock_fraction(gpu, cap_w: float) -> float:
    """SM clock under a board power cap, as a fraction of the uncapped clock (1 when cap ≥ TDP)."""
    if cap_w >= gpu.tdp_w:
        return 1.0
    return max(MIN_CLOCK_FRACTION, ((cap_w - gpu.idle_w) / (gpu.tdp_w - gpu.idle_w)) ** (1 / 3))


def apply_power_cap(gpu, cap_w: float):
    """`gpu` (a hwdb GpuSpec) with its SM clock lowered to fit `cap_w`: peak FLOPs × f/f₀, tdp_w = cap.
    HBM and link bandwidths unchanged. A cap at or above TDP returns the part unchanged."""
    from hwdb import FrozenDict

    if cap_w <= gpu.idle_w:
        raise PlannerInputError(f"--power-cap: {gpu.name} cap {cap_w:g} W is not above its loaded idle power "
                                f"{gpu.idle_w:g} W (hwdb idle_w)")
    if cap_w >= gpu.tdp_w:
        return gpu
    f = clock_fraction(gpu, cap_w)
    return replace(gpu, peak_tflops=FrozenDict({k: v * f for k, v in gpu.peak_tflops.items()}), tdp_w=float(cap_w))


def power_cap_notes(fleet: list[str], caps: Mapping[str, float] | None, extra_dirs=()) -> list[str]:
    """One note per capped GPU type of `fleet` (canonical names, in that order) saying what its cap does; a cap
    on a GPU type outside the fleet is bad input. The caps themselves are applied by planner.instance."""
    if not caps:
        return []
    import hwdb

    by_name = {hwdb.load_gpu(n, extra_dirs=extra_dirs).name: w for n, w in caps.items()}
    missing = sorted(set(by_name) - set(fleet))
    if missing:
        raise PlannerInputError(f"--power-cap: {missing[0]} is not in the fleet ({', '.join(sorted(fleet))})")
    notes = []
    for name in fleet:
        if name in by_name:
            g = hwdb.load_gpu(name, extra_dirs=extra_dirs)
            f = clock_fraction(g, by_name[name])
            notes.append(f"power cap {name} {by_name[name]:g} W (TDP {g.tdp_w:g} W): SM clock ×{f:.3f} → peak "
                         f"FLOP/s ×{f:.3f}; HBM bandwidth unchanged")
    return notes


def capped_gpu(gpu, caps: Mapping[str, float] | None, extra_dirs=()):
    """`gpu` with its cap from `caps` (names or aliases) applied, or unchanged when it has none."""
    if not caps:
        return gpu
    import hwdb

    for n, w in caps.items():
        if hwdb.load_gpu(n, extra_dirs=extra_dirs).name == gpu.name:
            return apply_power_cap(gpu, w)
    return gpu


# ---- activity and power --------------------------------------------------------------------------------------

def gpu_watts(gpu, activity: float) -> float:
    """Board power of one GPU at `activity` ∈ [0, 1]."""
    return gpu.idle_w + (gpu.tdp_w - gpu.idle_w) * min(max(activity, 0.0), 1.0)


def _share(step) -> float:
    return step.gpu_s / step.time_s if step.time_s > 0 else 0.0


def _prefill_activity(setup: Setup, cls: RequestClass, rate: float) -> float:
    """ρ · kernel share at the prefill queue's operating point (serving.prefill_batch)."""
    if rate <= 0:
        return 0.0
    step, service = prefill_batch(setup, cls.isl, rate, cls.arrival_ca2)
    return min(1.0, rate * service) * _share(step)


def _decode_activity(setup: Setup, cls: RequestClass, rate: float, batch: float | None = None) -> float:
    if rate <= 0:
        return 0.0
    if batch is None:  # Little's law at the decode fixed point (serving.decode_iteration_s)
        batch = rate * cls.osl * decode_iteration_s(setup, cls, rate)
    step = setup.step(StepShape(decode_seqs=max(batch, 1.0), decode_context=cls.isl + cls.osl / 2))
    return -math.expm1(-batch) * _share(step)


def _agg_activity(setup: Setup, cls: RequestClass, rate: float, batch: float | None = None) -> float:
    if rate <= 0:
        return 0.0
    isl, ctx = cls.isl, cls.isl + cls.osl / 2
    if batch is None:
        st = collocated_state(setup, cls, rate)
        if not math.isfinite(st.tpot_s):
            return 1.0  # overloaded: the engine never idles
        t, batch = st.iteration_s, st.batch
    else:
        t = batch / (rate * cls.osl) if batch > 0 else setup.step(StepShape(1.0, ctx, isl, isl)).time_s
    step = setup.step(StepShape(max(batch, 1.0), ctx, rate * t * isl, isl))
    return -math.expm1(-(batch + rate * t)) * _share(step)


def activity(setup: Setup, role: str, cls: RequestClass, rate: float, batch: float | None = None) -> float:
    """Fraction of the time one GPU of an instance of `role` draws active power at per-instance `rate` (req/s)
    of one request class. `batch`, when known (a Capacity's mean batch at that rate), skips the fixed point."""
    if role == Role.prefill:
        return _prefill_activity(setup, cls, rate)
    if role == Role.decode:
        return _decode_activity(setup, cls, rate, batch)
    return _agg_activity(setup, cls, rate, batch)


def instance_watts(setup: Setup, role: str, loads: dict[str, float], classes: dict[str, RequestClass],
                   capacity: dict[str, float]) -> float:
    """Power of ONE instance carrying per-instance `loads` (class -> req/s). With several classes the instance
    splits its time between them in proportion to their load fractions λ_s / cap_s (Mélange's form, as the
    MILP), each at the activity it shows serving that class alone at its share of the capacity."""
    u = {s: r / capacity[s] for s, r in loads.items() if r > 0 and capacity.get(s, 0) > 0}
    total = sum(u.values())
    act = 0.0
    for s, us in sorted(u.items()):
        act += us / total * activity(setup, role, classes[s], min(total, 1.0) * capacity[s])
    return setup.par.gpus * gpu_watts(setup.gpu, act)


def full_load_watts(setup: Setup, role: str, classes: list[RequestClass], capacity: dict[str, Capacity]) -> float:
    """Power of one instance serving at its SLO capacity (the most demanding class): what `--objective energy`
    charges per instance in the MILP (an upper estimate of its power at any lower load)."""
    acts = [activity(setup, role, c, capacity[c.name].rate_rps,
                     capacity[c.name].batch if role != Role.prefill else None)
            for c in classes if capacity[c.name].rate_rps > 0]
    return setup.par.gpus * gpu_watts(setup.gpu, max(acts, default=0.0))


@dataclass(frozen=True)
class PlanEnergy:
    watts: float  # the whole fleet at the routed load
    joules_per_token: float  # per output token: watts / output tokens/s

    def to_json(self) -> dict:
        return {"watts": self.watts, "joules_per_token": self.joules_per_token}


def plan_energy(instance_watts_total: float, tokens_per_s: float) -> PlanEnergy:
    return PlanEnergy(instance_watts_total, instance_watts_total / tokens_per_s if tokens_per_s > 0 else 0.0)
