"""The plan a simulation runs, rebuilt from the JSON `planner optimize --format json` wrote.

Every field is checked before use (a hostile or hand-edited PLAN.json is a one-line PlannerInputError naming the
field, never a traceback): the workload's request classes (SimClass), the ranked plan chosen, and one
InstanceGroup per instance group of that plan, each with its configured Setup. The Setup is built in one place,
`_instance_setup`, with the levers the document records (extra hwdb folders, power caps, speculative decoding,
KV compression); docs/architecture.md "Data flow" and "Levers".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hwdb
from hwdb.safe_load import MAX_PLAN_BYTES
from planner.capacity.estimate import Setup, require_fit
from planner.core.bounds import MAX_TOKENS
from planner.core.errors import InfeasibleError, PlannerInputError
from planner.core.inputs import read_document, shown_value
from planner.core.model import ModelSpec, dtype_bytes, load_model
from planner.core.parallel import ParallelConfig, check_parallel
from planner.core.vocab import Role
from planner.instance import InstanceBuilder, Levers

if TYPE_CHECKING:
    from hwdb import EngineProfile
    from planner.search.calibrate import Calibration

ROLES = (Role.agg, Role.prefill, Role.decode)  # engine roles; a plan's multiplex instance becomes a P + D pair


def load_plan_json(path: str | Path) -> dict[str, Any]:
    """The JSON document `planner optimize --format json` wrote (PlannerInputError if unreadable)."""
    if not Path(path).is_file():
        raise PlannerInputError(f"{path}: plan file not found")
    doc = read_document(path, MAX_PLAN_BYTES, json_only=True)
    if not isinstance(doc, dict) or "plans" not in doc:
        raise PlannerInputError(f"{path}: expected the output of `planner optimize --format json` (no 'plans')")
    return doc


# ---- checked field access ----------------------------------------------------------------------------------

def _field(d: Any, key: str, where: str, kind: type | None = None) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise PlannerInputError(f"plan: {where} lacks field '{key}' (expected `planner optimize --format json`)")
    v = d[key]
    number = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    if kind is int and not (number and v == int(v) and v <= MAX_TOKENS):
        raise PlannerInputError(f"plan: field '{where}.{key}' must be a non-negative integer (at most {MAX_TOKENS}), "
                                f"got {shown_value(v)}")
    if kind is float and not number:
        raise PlannerInputError(f"plan: field '{where}.{key}' must be a non-negative finite number, "
                                f"got {shown_value(v)}")
    if kind in (str, dict, list) and not isinstance(v, kind):
        raise PlannerInputError(f"plan: field '{where}.{key}' must be a {kind.__name__}, got {shown_value(v)}")
    return int(v) if kind is int else (float(v) if kind is float else v)


def _optional(d: dict[str, Any], key: str, where: str, default: Any, kind: type = float) -> Any:
    """An optional field of the plan JSON: absent or null is `default`, anything else is checked as _field."""
    return default if d.get(key) is None else _field(d, key, where, kind)


# ---- the workload ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SimClass:
    """One request class of the plan's workload, as the simulation replays it."""
    name: str
    isl: int
    osl: int
    ttft_s: float
    tpot_s: float
    percentile: float
    cv: float = 1.0  # inter-arrival coefficient of variation (1: Poisson; gamma renewal otherwise)
    trace_times: tuple[float, ...] = ()  # a replayed arrival trace (time-scaled to the class's rate)


def _arrival_of(c: Any, where: str) -> tuple[float, tuple[float, ...]]:
    """(cv, trace arrival instants) of a plan's workload entry (Poisson without an `arrival` field)."""
    a = c.get("arrival") if isinstance(c, dict) else None
    if not a:
        return 1.0, ()
    if not isinstance(a, dict):
        raise PlannerInputError(f"plan: field '{where}.arrival' must be a mapping, got {shown_value(a)}")
    cv = _field(a, "cv", where + ".arrival", float)
    if a.get("kind") == "trace" and a.get("trace"):
        from planner.core.workload import load_arrival_times

        try:
            return cv, load_arrival_times(str(a["trace"]), f"plan: {where}.arrival")
        except PlannerInputError:
            return cv, ()  # trace not found from here: gamma inter-arrivals with its cv instead
    return cv, ()


def plan_classes(plan_json: dict[str, Any]) -> list[SimClass]:
    """The document's workload as simulated request classes."""
    wl = _field(plan_json, "workload", "document")
    if not isinstance(wl, list) or not wl:
        raise PlannerInputError("plan: field 'workload' must be a non-empty list of request classes")
    out = []
    for i, c in enumerate(wl):
        where = f"workload[{i}]"
        slo = _field(c, "slo", where, dict)
        isl, osl = _field(c, "isl", where, int), _field(c, "osl", where, int)
        if not isl or not osl:
            raise PlannerInputError(f"plan: field '{where}.isl/osl' must be at least 1 token")
        out.append(SimClass(str(_field(c, "name", where)), isl, osl,
                            _field(slo, "ttft_ms", where + ".slo", float) * 1e-3,
                            _field(slo, "tpot_ms", where + ".slo", float) * 1e-3,
                            _optional(slo, "percentile", where + ".slo", 90.0), *_arrival_of(c, where)))
    return out


def select_plan(plan_json: dict[str, Any], rank: int) -> dict[str, Any]:
    """The ranked plan `rank` of the document."""
    plans = _field(plan_json, "plans", "document")
    if not isinstance(plans, list) or not plans:
        raise PlannerInputError("plan: field 'plans' must be a non-empty list (nothing to simulate)")
    for p in plans:
        if isinstance(p, dict) and p.get("rank") == rank:
            return p
    ranks = ", ".join(str(p.get("rank")) for p in plans if isinstance(p, dict))
    raise PlannerInputError(f"--plan-rank: no plan of rank {rank} in the file (ranks: {ranks})")


# ---- the instances -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InstanceGroup:
    """`count` identical instances of the plan; a multiplex instance is two groups (its SM partitions)."""
    role: str  # agg | prefill | decode: how the engine schedules
    label: str  # the role as instance names show it: also mux_prefill / mux_decode for multiplex partitions
    count: int
    setup: Setup
    load_rps: dict[str, float]  # the plan's routed rate per class
    kv_handoff: bool = True  # False for a multiplexed prefill partition: the KV stays on the GPU


@dataclass(frozen=True)
class _Document:
    """What the document fixes for every instance: engine, dtypes and the levers it records."""
    engine: EngineProfile
    dtype: str
    kv_dtype: str
    levers: Levers


def _document(plan_json: dict[str, Any], engine_name: str, dtype: str, kv_dtype: str,
              calibration: Calibration | None) -> _Document:
    try:
        engine = hwdb.load_engine(engine_name)
    except ValueError as e:
        raise PlannerInputError(f"plan: field 'engine': {e}") from None
    record = _optional(plan_json, "levers", "document", {}, dict)
    levers = Levers.from_json(lambda key, default, kind: _optional(record, key, "levers", default, kind), calibration)
    return _Document(engine, dtype, kv_dtype, levers)


def instance_groups(plan_json: dict[str, Any], plan: dict[str, Any],
                    calibration: Calibration | None) -> tuple[ModelSpec, list[InstanceGroup]]:
    """The model and one InstanceGroup per instance group of `plan`."""
    try:
        model = load_model(_field(plan_json, "model", "document", str))
    except PlannerInputError as e:
        raise PlannerInputError(f"plan: field 'model': {e}") from None
    engine_name = _optional(plan_json, "engine", "document", "vllm", str)
    dtype = _optional(plan_json, "dtype", "document", "bf16", str)
    kv_dtype = _optional(plan_json, "kv_dtype", "document", "bf16", str)
    for key, value in (("dtype", dtype), ("kv_dtype", kv_dtype)):
        dtype_bytes(value, f"plan: field '{key}'")
    insts = _field(plan, "instances", f"plans[rank={plan.get('rank')}]")
    if not isinstance(insts, list) or not insts:
        raise PlannerInputError("plan: the chosen plan has no instances")
    doc = _document(plan_json, engine_name, dtype, kv_dtype, calibration)
    builder = InstanceBuilder(model, doc.engine.name, doc.dtype, doc.kv_dtype, doc.levers)
    groups = []
    for i, inst in enumerate(insts):
        where = f"instances[{i}]"
        role = _field(inst, "role", where)
        if role not in ROLES and role != Role.multiplex:
            raise PlannerInputError(f"plan: field '{where}.role' must be agg, prefill, decode or multiplex, "
                                    f"got {shown_value(role)}")
        gpu_name = _field(inst, "gpu", where, str)
        par = ParallelConfig(*(max(1, _field(inst, k, where, int)) for k in ("tp", "pp", "ep", "dp")))
        skew = _optional(inst, "skew", where, 1.0)
        if skew < 1:
            raise PlannerInputError(f"plan: field '{where}.skew' must be at least 1, got {skew:g}")
        chunk_tokens = _field(inst, "chunk_tokens", where, int)
        spec_k = _optional(inst, "spec_k", where, 0, int)
        setup = _instance_setup(builder, gpu_name, par, chunk_tokens, skew, spec_k, where)
        try:
            check_parallel(model, par, setup.gpu.scaleup_domain_gpus)
        except PlannerInputError as e:
            raise PlannerInputError(f"plan: field '{where}': {e} (is the plan for another model?)") from None
        _require_fit(setup, plan_json, where, role)
        if role == Role.multiplex:  # intra-GPU P/D: its prefill and decode partitions as a P/D pair, no KV hand-off
            from planner.levers.multiplex import partition_setups

            frac = _field(inst, "sm_fraction", where, float)
            if not 0 < frac < 1:
                raise PlannerInputError(f"plan: field '{where}.sm_fraction' must be in (0, 1), got {frac:g}")
            pre, dec = partition_setups(setup, frac)
            count, loads = _field(inst, "count", where, int), _load_rps(inst, where)
            groups += [InstanceGroup(Role.prefill, "mux_prefill", count, pre, loads, False),
                       InstanceGroup(Role.decode, "mux_decode", count, dec, loads, True)]
            continue
        groups.append(InstanceGroup(role, role, _field(inst, "count", where, int), setup, _load_rps(inst, where)))
    return model, groups


# ---- the instance builder seam: one instance's Setup ---------------------------------------------------------

def _instance_setup(builder: InstanceBuilder, gpu_name: str, par: ParallelConfig, chunk_tokens: int, skew: float,
                    spec_k: int, where: str) -> Setup:
    """THE place simulate configures an instance: planner.instance's builder (one per document, with the levers
    it records: docs/architecture.md "Levers"); errors name the plan's field at `where`."""
    try:
        hwdb.load_gpu(gpu_name, extra_dirs=builder.levers.hwdb_dirs)
    except ValueError as e:
        raise PlannerInputError(f"plan: field '{where}.gpu': {e}") from None
    try:
        builder.gpu(gpu_name)  # hwdb part -> calibration -> power cap
    except ValueError as e:
        raise PlannerInputError(f"plan: field 'levers.power_cap_w': {e}") from None
    return builder.build(gpu_name, par, chunk_tokens, skew, spec_k if builder.levers.spec is not None else 0)


def _load_rps(inst: dict[str, Any], where: str) -> dict[str, float]:
    loads = _optional(inst, "load_rps", where, {}, dict)
    for name in loads:
        _field(loads, name, f"{where}.load_rps", float)
    return dict(loads)


def _require_fit(setup: Setup, plan_json: dict[str, Any], where: str, role: str) -> None:
    """The instance holds its weights and the shortest class's sequence (its prompt on a prefill instance);
    otherwise the plan was made for another model, GPU or dtype, and simulating it would measure nothing."""
    isl, osl = min(((c["isl"], c["osl"]) for c in plan_json["workload"]), key=sum)
    try:
        require_fit(setup, isl, 0 if role == Role.prefill else osl)
    except InfeasibleError as e:
        raise PlannerInputError(f"plan: field '{where}': {e} (is the plan for another model or GPU?)") from None
