"""`planner simulate`: a discrete-event simulation of one plan, to check the analytical serving model (DESIGN §4).

What is simulated, per instance of the plan (each instance of a group separately):
  arrivals   Poisson per request class (the class's fixed ISL / OSL), or a replayed trace (load_trace_csv).
  router     each class's requests go to the instance groups that serve it in the plan's proportions (smooth
             weighted round robin), then within the group to the instance with the least outstanding work:
             remaining prompt tokens · (s per prefill token) + remaining output tokens · (s per output token at
             the batch the plan expects) of everything routed to it. A finished prompt goes the same way to a
             decode instance (least remaining output tokens). router="round_robin" / "random" replace the
             within-group choice (random also picks the group at random, by weight): random routing gives each
             instance Poisson arrivals, the per-instance analytical model's assumption.
  engine     continuous batching, one iteration at a time, timed by the planner's own step model
             (`Setup.step`). Agg: every running decode plus waiting prompts' tokens up to the chunk budget
             C − (decodes), FCFS, a prompt may span iterations (chunked prefill, Sarathi / vLLM V1 greedy
             scheduling); a prompt's first token comes at the end of its last chunk's iteration and it decodes
             from the next one. Prefill: waiting prompts batched up to the budget. Decode: every running sequence.
  KV memory  a request is admitted (FCFS, head of line blocks) when the instance has room for its whole KV
             (isl + osl tokens; isl on a prefill instance, held until its hand-off ends) and fewer than
             max_num_seqs·dp sequences run: the capacity the planner's max_batch uses, without preemption.
             A request larger than every instance's KV is dropped.
  P/D        when a prompt's last chunk ends on a prefill instance its KV ships to a decode instance
             (serving.kv_handoff_s); the first token counts as out when the hand-off ends.
Metrics: TTFT = first token − arrival; TPOT = (finish − first token) / (osl − 1) (0 for osl = 1); a request
attains the SLO when it meets both of its class's. The first 10% of arrivals are warm-up, left out of the
statistics; requests unfinished max(60 s, duration) after the last arrival count as dropped (and as misses).
Goodput = measured requests meeting both SLOs per second of the measured arrival window; utilisation = busy
(iterating) time over that window (a decode keeps an engine busy for its whole life).

Speed: one Python step per engine iteration (never per token; decode completions sit in a heap keyed by the
iteration they end on); iteration times are memoised per instance type on (decode batch, mean decode context
rounded to 64 tokens, prefill tokens (exact below 256, else rounded to 16), prompt length rounded to 16).
benchmarks/simulate_speed.py: 100k requests in 1-2 s at fixed lengths, ~4 s with lognormal lengths.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from planner.errors import InfeasibleError, PlannerInputError
from planner.inputs import read_csv, read_document, shown_value
from planner.bounds import MAX_TOKENS
from planner.workload import MAX_TRACE_ROWS

WARMUP_FRACTION = 0.10  # leading share of arrivals left out of the statistics
CTX_BUCKET = 64  # decode context rounding of the iteration-time cache (tokens)
PROMPT_BUCKET = 16  # prompt-length rounding of the iteration-time cache (tokens)
PREFILL_BUCKET = 16  # prefill-token rounding of the cache from 256 tokens up (below: exact)
DRAIN_MIN_S = 60.0  # after the last arrival the simulation runs on at most max(this, duration) seconds

AGG, PREFILL, DECODE = 0, 1, 2
ROUTERS = ("least_work", "round_robin", "random")
LEAST_WORK, ROUND_ROBIN, RANDOM = 0, 1, 2
_ROLES = {"agg": AGG, "prefill": PREFILL, "decode": DECODE}
_ROLE_NAMES = {v: k for k, v in _ROLES.items()}
_INF = math.inf


# ---- results -----------------------------------------------------------------------------------------------

@dataclass
class ClassResult:
    name: str
    rate_rps: float  # offered arrival rate of the class
    requests: int  # measured requests (after warm-up)
    completed: int
    slo: dict  # {"ttft_ms", "tpot_ms", "percentile"}
    ttft_ms: dict  # {"p50", "p90", "p99"}
    tpot_ms: dict
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
    ttft_ms: dict  # {"p50", "p90", "p99"} over measured requests (unfinished count as inf)
    tpot_ms: dict
    ttft_attainment: float
    tpot_attainment: float
    attainment: float  # fraction of measured requests meeting both SLOs
    goodput_rps: float
    predicted_goodput_rps: float  # the plan's analytical goodput, for comparison
    predicted: dict = field(default_factory=dict)  # the plan's predicted p-th percentile {"ttft_ms", "tpot_ms"}
    per_class: dict[str, ClassResult] = field(default_factory=dict)
    instances: list[InstanceResult] = field(default_factory=list)
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        d = asdict(self)
        d["per_class"] = {k: asdict(v) for k, v in self.per_class.items()}
        return d


# ---- trace -------------------------------------------------------------------------------------------------

def load_trace_csv(path) -> list[tuple[float, int, int, str | None]]:
    """Read a request trace: a header row naming the columns arrival_s, isl, osl and optionally class, then
    one request per row. Returns (arrival_s, isl, osl, class or None) sorted by arrival time (stable).
    Bad rows raise PlannerInputError naming the file and line."""
    if not Path(path).is_file():
        raise PlannerInputError(f"{path}: trace file not found")
    header = None
    rows: list[tuple[float, int, int, str | None]] = []
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


def load_plan_json(path) -> dict:
    """The JSON document `planner optimize --format json` wrote (PlannerInputError if unreadable)."""
    from hwdb.safe_load import MAX_PLAN_BYTES

    if not Path(path).is_file():
        raise PlannerInputError(f"{path}: plan file not found")
    doc = read_document(path, MAX_PLAN_BYTES, json_only=True)
    if not isinstance(doc, dict) or "plans" not in doc:
        raise PlannerInputError(f"{path}: expected the output of `planner optimize --format json` (no 'plans')")
    return doc


# ---- the plan, rebuilt -------------------------------------------------------------------------------------

def _field(d, key, where, kind=None):
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


def _optional(d: dict, key: str, where: str, default, kind=float):
    """An optional field of the plan JSON: absent or null is `default`, anything else is checked as _field."""
    return default if d.get(key) is None else _field(d, key, where, kind)


@dataclass(frozen=True)
class _Class:
    name: str
    isl: int
    osl: int
    ttft_s: float
    tpot_s: float
    percentile: float
    cv: float = 1.0  # inter-arrival coefficient of variation (1: Poisson; gamma renewal otherwise)
    trace_times: tuple = ()  # a replayed arrival trace (time-scaled to the class's rate)


def _arrival_of(c: dict, where: str) -> tuple[float, tuple]:
    """(cv, trace arrival instants) of a plan's workload entry (Poisson without an `arrival` field)."""
    a = c.get("arrival") if isinstance(c, dict) else None
    if not a:
        return 1.0, ()
    if not isinstance(a, dict):
        raise PlannerInputError(f"plan: field '{where}.arrival' must be a mapping, got {shown_value(a)}")
    cv = _field(a, "cv", where + ".arrival", float)
    if a.get("kind") == "trace" and a.get("trace"):
        from planner.workload import load_arrival_times

        try:
            return cv, load_arrival_times(str(a["trace"]), f"plan: {where}.arrival")
        except PlannerInputError:
            return cv, ()  # trace not found from here: gamma inter-arrivals with its cv instead
    return cv, ()


def _classes(plan_json) -> list[_Class]:
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
        out.append(_Class(str(_field(c, "name", where)), isl, osl,
                          _field(slo, "ttft_ms", where + ".slo", float) * 1e-3,
                          _field(slo, "tpot_ms", where + ".slo", float) * 1e-3,
                          _optional(slo, "percentile", where + ".slo", 90.0), *_arrival_of(c, where)))
    return out


def _select_plan(plan_json, rank: int) -> dict:
    plans = _field(plan_json, "plans", "document")
    if not isinstance(plans, list) or not plans:
        raise PlannerInputError("plan: field 'plans' must be a non-empty list (nothing to simulate)")
    for p in plans:
        if isinstance(p, dict) and p.get("rank") == rank:
            return p
    ranks = ", ".join(str(p.get("rank")) for p in plans if isinstance(p, dict))
    raise PlannerInputError(f"--plan-rank: no plan of rank {rank} in the file (ranks: {ranks})")


def _setups(plan_json, plan, calibration):
    """One Setup per instance group, from the JSON (the same construction as planner.optimize, with the levers
    the document records: extra hwdb folders, power caps, speculative decoding, KV compression)."""
    import hwdb

    from planner.estimate import Setup
    from planner.model import dtype_bytes, load_model
    from planner.parallel import ParallelConfig, check_parallel

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
    try:
        engine = hwdb.load_engine(engine_name)
    except ValueError as e:
        raise PlannerInputError(f"plan: field 'engine': {e}") from None
    if calibration is not None:
        engine = calibration.apply_engine(engine)
    levers = _optional(plan_json, "levers", "document", {}, dict)
    extra_dirs = _optional(levers, "hwdb", "levers", [], list)
    if not all(isinstance(d, str) for d in extra_dirs):
        raise PlannerInputError("plan: field 'levers.hwdb' must be a list of folders")
    extra_dirs = tuple(extra_dirs)
    caps = _optional(levers, "power_cap_w", "levers", {}, dict)
    if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and 0 < w < math.inf for w in caps.values()):
        raise PlannerInputError("plan: field 'levers.power_cap_w' must map GPU names to watts")
    kv_compression = _optional(levers, "kv_compression", "levers", 1.0)
    if kv_compression < 1:
        raise PlannerInputError(f"plan: field 'levers.kv_compression' must be at least 1, got {kv_compression:g}")
    _optional(levers, "link_gbps", "levers", 0.0)
    spec = None
    if levers.get("spec"):
        from planner.spec import parse_spec

        spec = parse_spec(_field(levers, "spec", "levers", str))
    groups = []
    for i, inst in enumerate(insts):
        where = f"instances[{i}]"
        role = _field(inst, "role", where)
        if role not in _ROLES and role != "multiplex":
            raise PlannerInputError(f"plan: field '{where}.role' must be agg, prefill, decode or multiplex, "
                                    f"got {shown_value(role)}")
        try:
            gpu = hwdb.load_gpu(_field(inst, "gpu", where, str), extra_dirs=extra_dirs)
        except ValueError as e:
            raise PlannerInputError(f"plan: field '{where}.gpu': {e}") from None
        if caps:
            from planner.energy import capped_gpu

            try:
                gpu = capped_gpu(gpu, caps, extra_dirs)
            except ValueError as e:
                raise PlannerInputError(f"plan: field 'levers.power_cap_w': {e}") from None
        if calibration is not None:
            gpu = calibration.apply_gpu(gpu)
        par = ParallelConfig(*(max(1, _field(inst, k, where, int)) for k in ("tp", "pp", "ep", "dp")))
        try:
            check_parallel(model, par, gpu.scaleup_domain_gpus)
        except PlannerInputError as e:
            raise PlannerInputError(f"plan: field '{where}': {e} (is the plan for another model?)") from None
        skew = _optional(inst, "skew", where, 1.0)
        if skew < 1:
            raise PlannerInputError(f"plan: field '{where}.skew' must be at least 1, got {skew:g}")
        setup = Setup(model, gpu, par, engine.for_gpu(gpu), dtype, kv_dtype,
                      _field(inst, "chunk_tokens", where, int), skew, kv_compression=kv_compression)
        spec_k = _optional(inst, "spec_k", where, 0, int)
        if spec is not None and spec_k:
            from planner.spec import resolve

            setup = replace(setup, spec=resolve(spec, model, par, spec_k, gpu.scaleup_domain_gpus))
        _require_fit(setup, plan_json, where, role)
        if role == "multiplex":  # intra-GPU P/D: its prefill and decode partitions as a P/D pair, no KV hand-off
            from planner.multiplex import partition_setups

            frac = _field(inst, "sm_fraction", where, float)
            if not 0 < frac < 1:
                raise PlannerInputError(f"plan: field '{where}.sm_fraction' must be in (0, 1), got {frac:g}")
            pre, dec = partition_setups(setup, frac)
            for part, s in (("mux_prefill", pre), ("mux_decode", dec)):
                groups.append((part, _field(inst, "count", where, int), s, _load_rps(inst, where)))
            continue
        groups.append((role, _field(inst, "count", where, int), setup, _load_rps(inst, where)))
    return model, groups


def _load_rps(inst: dict, where: str) -> dict:
    loads = _optional(inst, "load_rps", where, {}, dict)
    for name in loads:
        _field(loads, name, f"{where}.load_rps", float)
    return dict(loads)


def _require_fit(setup, plan_json: dict, where: str, role: str) -> None:
    """The instance holds its weights and the shortest class's sequence (its prompt on a prefill instance);
    otherwise the plan was made for another model, GPU or dtype, and simulating it would measure nothing."""
    from planner.estimate import require_fit

    isl, osl = min(((c["isl"], c["osl"]) for c in plan_json["workload"]), key=sum)
    try:
        require_fit(setup, isl, 0 if role == "prefill" else osl)
    except InfeasibleError as e:
        raise PlannerInputError(f"plan: field '{where}': {e} (is the plan for another model or GPU?)") from None


# ---- the engines -------------------------------------------------------------------------------------------

class _Sim:
    """Shared per-request state (plain lists: fastest element access from Python) and the event heap."""
    __slots__ = ("arrival", "isl", "osl", "need_full", "need_pre", "first", "finish", "heap", "seq", "w0", "w1")

    def push(self, t, kind, a, b=0):
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, a, b))


class _Engine:
    """One serving instance: continuous batching, one iteration in flight at a time."""
    __slots__ = ("idx", "name", "role", "group", "gpu", "setup", "chunk", "seq_cap", "kv_cap", "times", "waiting",
                 "prefilling", "ndone", "n_seqs", "kv_used", "n_dec", "sum_ctx", "fin", "it", "busy", "t_start",
                 "prompt_rem", "out_rem", "wp", "wd", "busy_s", "iters", "dec_sum", "routed", "handoff", "kv_sum",
                 "cur_dec", "cur_ptoks", "busy_all")

    def __init__(self, idx, name, role, group, setup, times, handoff):
        self.idx, self.name, self.role, self.group, self.setup = idx, name, role, group, setup
        self.gpu = setup.gpu.name
        self.chunk = setup.chunk
        mem = setup.memory(1.0)
        self.seq_cap = setup.engine.max_num_seqs * setup.par.dp
        self.kv_cap = mem.kv_tokens
        self.times = times
        self.handoff = handoff
        self.waiting = deque()
        self.prefilling = deque()  # [request, prompt tokens not yet scheduled] of admitted prompts, FCFS
        self.ndone = 0  # prompts whose last chunk runs in the iteration in flight
        self.n_seqs = self.kv_used = self.n_dec = self.sum_ctx = self.it = self.iters = self.routed = 0
        self.fin = []  # (iteration index at whose end the request finishes, request)
        self.busy = False
        self.t_start = self.busy_s = 0.0
        self.prompt_rem = self.out_rem = self.dec_sum = self.kv_sum = self.busy_all = 0.0
        self.cur_dec = self.cur_ptoks = 0
        self.wp = self.wd = 0.0

    def start(self, now, sim):
        """Begin the next iteration (admission, then the batch), or go idle."""
        role = self.role
        w = self.waiting
        if w:
            need = sim.need_pre if role == PREFILL else sim.need_full
            isl = sim.isl
            while w and self.n_seqs < self.seq_cap:
                r = w[0]
                k = need[r]
                if self.kv_used + k > self.kv_cap:
                    break
                w.popleft()
                self.kv_used += k
                self.n_seqs += 1
                if role == DECODE:  # joins this iteration; its osl − 1 tokens end with iteration it + osl − 1
                    self.n_dec += 1
                    self.sum_ctx += isl[r] + 1
                    heapq.heappush(self.fin, (self.it + sim.osl[r] - 1, r))
                else:
                    self.prefilling.append([r, isl[r]])
        n_dec = self.n_dec
        ptoks = 0
        pb = 0
        if self.prefilling:
            budget = self.chunk - n_dec
            wsum = 0
            nd = 0
            isl = sim.isl
            for e in self.prefilling:
                if budget <= 0:
                    break
                rem = e[1]
                take = rem if rem < budget else budget
                e[1] = rem - take
                budget -= take
                ptoks += take
                wsum += take * isl[e[0]]
                if take < rem:
                    break
                nd += 1
            self.ndone = nd
            if ptoks:
                pb = int(wsum / (ptoks * PROMPT_BUCKET) + 0.5)
        if not n_dec and not ptoks:
            self.busy = False
            return
        cb = (self.sum_ctx + n_dec * (CTX_BUCKET // 2)) // (n_dec * CTX_BUCKET) if n_dec else 0
        pk = ptoks if ptoks < 256 else (ptoks + PREFILL_BUCKET // 2) // PREFILL_BUCKET * PREFILL_BUCKET
        key = (n_dec, cb, pk, pb)
        dt = self.times.get(key)
        if dt is None:
            dt = self.times[key] = self._step(n_dec, cb, pk, pb)
        self.prompt_rem -= ptoks
        self.cur_dec = n_dec
        self.cur_ptoks = ptoks
        self.busy = True
        self.t_start = now
        sim.push(now + dt, 1, self.idx)

    def _step(self, n_dec, cb, ptoks, pb) -> float:
        from planner.perf.step import StepShape

        ctx = cb * CTX_BUCKET if cb else CTX_BUCKET / 2
        return self.setup.step(StepShape(n_dec, ctx if n_dec else 0.0, ptoks,
                                         max(pb, 1) * PROMPT_BUCKET if ptoks else 0.0)).time_s

    def end(self, now, sim):
        """The iteration in flight ends at `now`: tokens out, finished requests leave, then the next one."""
        a = self.t_start if self.t_start > sim.w0 else sim.w0
        b = now if now < sim.w1 else sim.w1
        if b > a:
            self.busy_s += b - a
            self.kv_sum += (b - a) * self.kv_used
        dt = now - self.t_start
        self.busy_all += dt
        self.dec_sum += dt * self.cur_dec
        self.iters += 1
        it = self.it = self.it + 1
        n_dec = self.n_dec
        isl, osl = sim.isl, sim.osl
        if n_dec:
            self.sum_ctx += n_dec
            self.out_rem -= n_dec
            fin = self.fin
            need = sim.need_full
            finish = sim.finish
            while fin and fin[0][0] <= it:
                r = heapq.heappop(fin)[1]
                finish[r] = now
                self.n_dec -= 1
                self.sum_ctx -= isl[r] + osl[r]
                self.kv_used -= need[r]
                self.n_seqs -= 1
        nd = self.ndone
        if nd:
            self.ndone = 0
            pre = self.prefilling
            first = sim.first
            if self.role == AGG:
                for _ in range(nd):
                    r = pre.popleft()[0]
                    first[r] = now
                    self.out_rem -= 1
                    if osl[r] > 1:
                        self.n_dec += 1
                        self.sum_ctx += isl[r] + 1
                        heapq.heappush(self.fin, (it + osl[r] - 1, r))
                    else:
                        sim.finish[r] = now
                        self.kv_used -= sim.need_full[r]
                        self.n_seqs -= 1
            else:  # prefill: the KV ships to a decode instance; the first token is out when it lands
                handoff = self.handoff
                for _ in range(nd):
                    r = pre.popleft()[0]
                    h = handoff(isl[r])
                    first[r] = now + h
                    sim.push(now + h, 2, r, self.idx)
        self.start(now, sim)


class _GroupPicker:
    """Splits one class's requests over the instance groups that serve it in the plan's proportions (smooth
    weighted round robin, or weighted random for router="random"), then picks the instance within the group:
    least outstanding work, round robin, or uniformly at random."""
    __slots__ = ("groups", "weights", "current", "total", "mode", "rng", "next")

    def __init__(self, groups, mode: int, rng):
        self.groups = [m for _, m in groups]
        self.weights = [w for w, _ in groups]
        self.current = [0.0] * len(groups)
        self.total = sum(self.weights)
        self.mode, self.rng = mode, rng
        self.next = [0] * len(groups)

    def group(self) -> int:
        if len(self.groups) == 1:
            return 0
        if self.mode == RANDOM:
            x = self.rng.random() * self.total
            for i, w in enumerate(self.weights):
                x -= w
                if x < 0:
                    return i
            return len(self.weights) - 1
        cur = self.current
        best = 0
        for i, w in enumerate(self.weights):
            cur[i] += w
            if cur[i] > cur[best]:
                best = i
        cur[best] -= self.total
        return best

    def choose(self, need: int, need_prefill: int, work):
        """An instance of the next group that can hold the request's KV (`need` tokens, `need_prefill` on a
        prefill instance); None if none can."""
        g = self.group()
        members = self.groups[g]
        if self.mode != LEAST_WORK:
            if self.mode == ROUND_ROBIN:
                e = members[self.next[g] % len(members)]
                self.next[g] += 1
            else:
                e = members[int(self.rng.random() * len(members))]
            if (need_prefill if e.role == PREFILL else need) <= e.kv_cap:
                return e
        best, bw = None, _INF
        for e in members:
            if (need_prefill if e.role == PREFILL else need) <= e.kv_cap:
                w = work(e)
                if w < bw:
                    best, bw = e, w
        return best


def _entry_work(e) -> float:
    return e.prompt_rem * e.wp + e.out_rem * e.wd


def _decode_work(e) -> float:
    return e.out_rem


def _rates(plan: dict, classes: list[_Class], rate_rps: float | None) -> dict[str, float]:
    """Offered rate per class: the plan's goodput (or `rate_rps`) split as the plan routes load to its entry
    (agg / prefill) instances."""
    served = {c.name: 0.0 for c in classes}
    for inst in plan.get("instances", []):
        if inst.get("role") in ("agg", "prefill"):
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


def _renewal(rates: dict, classes: list[_Class], duration_s: float, seed: int, cv: float | None):
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

            def gaps(n=n, shape=shape, lam=lam):  # cv = 1: exponential gaps, a Poisson process
                return rng.exponential(1.0 / lam, n) if shape == 1.0 else rng.gamma(shape, 1.0 / (lam * shape), n)

            t = np.cumsum(gaps())
            while t[-1] < duration_s:
                t = np.concatenate([t, t[-1] + np.cumsum(gaps())])
            t = t[t < duration_s]
        ts.append(t)
        cs.append(np.full(len(t), ci, dtype=np.int64))
    t, c = np.concatenate(ts), np.concatenate(cs)
    order = np.argsort(t, kind="stable")
    return t[order], c[order]


def _trace_arrays(trace, classes: list[_Class]):
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
    isl = np.array([r[1] for r in rows], dtype=np.int64)
    osl = np.array([r[2] for r in rows], dtype=np.int64)
    cls = np.array([r[3] for r in rows], dtype=np.int64)
    return arrival, isl, osl, cls


def _engines(groups, classes: list[_Class], mode: int, seed: int, link_gbps: float | None = None):
    """The plan's instances as engines, and per class the pickers of its entry and decode instances."""
    import random

    from planner.perf.step import StepShape
    from planner.serving import kv_handoff_s

    by_name = {c.name: i for i, c in enumerate(classes)}
    engines: list[_Engine] = []
    entry: list[list] = [[] for _ in classes]  # per class: (weight, engines of a group) that take new requests
    exits: list[list] = [[] for _ in classes]  # decode groups
    tables: dict = {}  # memoised iteration times, shared by identical instance types
    for g, (role_name, count, setup, load) in enumerate(groups):
        if count <= 0:
            continue
        role = _ROLES[role_name.removeprefix("mux_")]
        times = tables.setdefault(setup, {})
        handoff = None
        if role_name == "mux_prefill":  # the KV stays on the GPU: the decode partition starts at once
            def handoff(isl):
                return 0.0
        elif role == PREFILL:
            def handoff(isl, setup=setup, memo={}):  # noqa: B006  per-group memo of the KV hand-off time
                v = memo.get(isl)
                if v is None:
                    v = memo[isl] = kv_handoff_s(setup, isl, link_gbps)
                return v
        weights = {c.name: float(load.get(c.name, 0) or 0) for c in classes}
        served = [c for c in classes if weights[c.name] > 0] or classes
        # the router's speed weights: s per prompt token, s per output token at the batch the plan expects
        # on this instance (Little's law at its planned load with the TPOT SLO)
        per_inst = sum(weights[c.name] for c in served) / count
        isl_m = sum(c.isl for c in served) / len(served)
        osl_m = sum(c.osl for c in served) / len(served)
        b_ref = max(1.0, min(setup.engine.max_num_seqs * setup.par.dp,
                             per_inst * osl_m * min(c.tpot_s for c in served)))
        wp = setup.step(StepShape(prefill_tokens=setup.chunk, prefill_seq_len=isl_m)).time_s / setup.chunk
        wd = setup.step(StepShape(decode_seqs=b_ref, decode_context=isl_m + osl_m / 2)).time_s / b_ref
        label = f"{role_name} {setup.gpu.name} {setup.par.label()}"
        members = []
        for k in range(count):
            e = _Engine(len(engines), f"{label} #{k + 1}", role, g, setup, times, handoff)
            e.wp = wp if role != DECODE else 0.0
            e.wd = wd if role != PREFILL else 0.0
            engines.append(e)
            members.append(e)
        for c in served:
            (exits if role == DECODE else entry)[by_name[c.name]].append((weights[c.name] or 1.0, members))
    for ci, c in enumerate(classes):
        if not entry[ci]:
            raise PlannerInputError(f"plan: no agg or prefill instance serves class '{c.name}'")
        if any(m[0].role == PREFILL for _, m in entry[ci]) and not exits[ci]:
            raise PlannerInputError(f"plan: class '{c.name}' has prefill instances but no decode instance")
    rng = random.Random(seed * 1_000_003 + 17)
    return engines, [_GroupPicker(x, mode, rng) for x in entry], [_GroupPicker(x, mode, rng) for x in exits]


def _run(sim: _Sim, engines: list[_Engine], entry, exits, cls: list[int], horizon: float) -> None:
    """The event loop: arrivals (in order, outside the heap), iteration ends (1), KV hand-offs landing (2)."""
    heap = sim.heap
    heappop = heapq.heappop
    arrival, isl, osl, need_full, need_pre, finish = (sim.arrival, sim.isl, sim.osl, sim.need_full, sim.need_pre,
                                                      sim.finish)
    n = len(arrival)
    ai = 0
    while True:
        t_arr = arrival[ai] if ai < n else _INF
        if heap and heap[0][0] <= t_arr:
            t, _, kind, a, b = heappop(heap)
            if t > horizon:
                return
            if kind == 1:
                engines[a].end(t, sim)
                continue
            src = engines[b]  # request a's KV has left prefill engine b
            src.kv_used -= need_pre[a]
            src.n_seqs -= 1
            if not src.busy and src.waiting:
                src.start(t, sim)
            if osl[a] <= 1:
                finish[a] = t
                continue
            dst = exits[cls[a]].choose(need_full[a], need_full[a], _decode_work)
            if dst is None:
                continue  # no decode instance holds its KV: dropped
            dst.out_rem += osl[a] - 1
            dst.routed += 1
            dst.waiting.append(a)
            if not dst.busy:
                dst.start(t, sim)
            continue
        if ai >= n:
            return
        r = ai
        ai += 1
        dst = entry[cls[r]].choose(need_full[r], need_pre[r], _entry_work)
        if dst is None:
            continue  # larger than any instance's KV: dropped
        dst.prompt_rem += isl[r]
        if dst.role == AGG:
            dst.out_rem += osl[r]
        dst.routed += 1
        dst.waiting.append(r)
        if not dst.busy:
            dst.start(t_arr, sim)


def _pct(x: np.ndarray) -> dict:
    if not len(x):
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0}
    v = np.percentile(x, [50, 90, 99], method="inverted_cdf") * 1e3
    return {"p50": float(v[0]), "p90": float(v[1]), "p99": float(v[2])}


def _frac(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else 0.0


def simulate_plan(plan_json: dict, *, rank: int = 1, rate_rps: float | None = None, duration_s: float = 300.0,
                  seed: int = 0, trace: list | None = None, calibration=None,
                  router: str = "least_work", arrival_cv: float | None = None) -> SimResult:
    """Simulate plan `rank` of a `planner optimize --format json` document.

    Poisson arrivals for `duration_s` seconds at `rate_rps` req/s in total (default: the plan's goodput), split
    over the classes as the plan routes them; or replay `trace` [(arrival_s, isl, osl, class or None), ...]
    (then rate and duration come from the trace; a missing class is the workload's first). `router`:
    least_work (default), round_robin or random within each instance group (groups get the plan's shares).
    Bursty classes (the workload's `arrival: gamma(cv=…)` or trace, issue 8) arrive as that renewal process
    instead of Poisson (_renewal); `arrival_cv` overrides every class's cv (1 = Poisson).
    Same inputs and seed give the same result (wall_s aside)."""
    wall0 = time.perf_counter()
    if not isinstance(plan_json, dict):
        raise PlannerInputError("plan: expected the JSON object written by `planner optimize --format json`")
    if router not in ROUTERS:
        raise PlannerInputError(f"--router: expected one of {', '.join(ROUTERS)}, got '{router}'")
    classes = _classes(plan_json)
    plan = _select_plan(plan_json, rank)
    model, groups = _setups(plan_json, plan, calibration)

    if trace is not None:
        arrival, isl_arr, osl_arr, cls_arr = _trace_arrays(trace, classes)
        t_end = duration = float(arrival[-1])
        span = t_end - float(arrival[0])
        offered = (len(arrival) - 1) / span if span > 0 else 0.0
        rates = {c.name: offered * float(np.mean(cls_arr == i)) for i, c in enumerate(classes)}
    else:
        if not duration_s > 0 or not math.isfinite(duration_s):
            raise PlannerInputError(f"--duration-s: must be a positive number of seconds, got {duration_s:g}")
        rates = _rates(plan, classes, rate_rps)
        if arrival_cv is not None and not (arrival_cv > 0 and math.isfinite(arrival_cv)):
            raise PlannerInputError(f"--arrival: the cv must be a positive number, got {arrival_cv:g}")
        arrival, cls_arr = _renewal(rates, classes, duration_s, seed, arrival_cv)
        isl_arr = np.array([c.isl for c in classes], dtype=np.int64)[cls_arr]
        osl_arr = np.array([c.osl for c in classes], dtype=np.int64)[cls_arr]
        t_end = duration = float(duration_s)
        offered = sum(rates.values())
    n = len(arrival)
    n_warm = int(n * WARMUP_FRACTION)

    # KV tokens a request reserves: its whole sequence on agg / decode instances, its prompt on a prefill one
    # (sliding-window layers capped at the window, as the planner's memory model counts them)
    kv_dtype = str(plan_json.get("kv_dtype", "bf16"))
    per_tok = model.kv_bytes_per_token(kv_dtype)
    memo: dict[int, int] = {}

    def kv_need(ctx: int) -> int:
        v = memo.get(ctx)
        if v is None:
            v = memo[ctx] = math.ceil(model.kv_bytes_per_sequence(ctx, kv_dtype) / per_tok - 1e-9) if per_tok \
                else ctx
        return v

    sim = _Sim()
    sim.arrival = arrival.tolist()
    sim.isl, sim.osl = isl_arr.tolist(), osl_arr.tolist()
    sim.need_full = [kv_need(a + b) for a, b in zip(sim.isl, sim.osl)]
    sim.need_pre = [kv_need(a) for a in sim.isl]
    sim.first = [_INF] * n
    sim.finish = [_INF] * n
    sim.heap = []
    sim.seq = 0
    sim.w0 = float(arrival[n_warm])
    sim.w1 = t_end
    engines, entry, exits = _engines(groups, classes, ROUTERS.index(router), seed,
                                     (plan_json.get("levers") or {}).get("link_gbps"))
    horizon = t_end + max(DRAIN_MIN_S, duration)
    _run(sim, engines, entry, exits, cls_arr.tolist(), horizon)

    # ---- statistics over the measured requests (the first WARMUP_FRACTION of arrivals left out) ----
    first = np.asarray(sim.first[n_warm:], dtype=float)
    fin = np.asarray(sim.finish[n_warm:], dtype=float)
    osl_m, cls_m = osl_arr[n_warm:], cls_arr[n_warm:]
    ttft = first - arrival[n_warm:]
    with np.errstate(invalid="ignore"):
        tpot = np.where(osl_m > 1, (fin - first) / np.maximum(osl_m - 1, 1), 0.0)
    done = np.isfinite(fin)
    tpot = np.where(done, tpot, _INF)
    ok_ttft = ttft <= np.array([c.ttft_s for c in classes])[cls_m] * (1 + 1e-9)
    ok_tpot = tpot <= np.array([c.tpot_s for c in classes])[cls_m] * (1 + 1e-9)
    ok = ok_ttft & ok_tpot
    window = t_end - sim.w0
    if window <= 0:  # a trace whose measured requests all arrive at once: their completion span instead
        window = max(float(np.max(fin[done])) - sim.w0 if done.any() else 0.0, 1e-9)
    m = len(ok)
    per_class = {}
    for ci, c in enumerate(classes):
        sel = cls_m == ci
        per_class[c.name] = ClassResult(
            c.name, float(rates.get(c.name, 0.0)), int(sel.sum()), int(done[sel].sum()),
            {"ttft_ms": c.ttft_s * 1e3, "tpot_ms": c.tpot_s * 1e3, "percentile": c.percentile},
            _pct(ttft[sel]), _pct(tpot[sel & (osl_m > 1)]), _frac(ok_ttft[sel]), _frac(ok_tpot[sel]),
            _frac(ok[sel]), float(ok[sel].sum()) / window)
    instances = [InstanceResult(e.name, _ROLE_NAMES[e.role], e.gpu, e.group, min(1.0, e.busy_s / window),
                                e.routed, e.iters, e.dec_sum / e.busy_all if e.busy_all else 0.0,
                                e.kv_sum / (window * e.kv_cap) if e.kv_cap else 0.0) for e in engines]
    notes = []
    if trace is None and (arrival_cv is not None or any(c.cv != 1.0 or c.trace_times for c in classes)):
        notes.append("arrivals: " + ", ".join(
            f"{c.name} " + (f"trace {len(c.trace_times)} arrivals (cv {c.cv:.2f}) time-scaled"
                            if c.trace_times and arrival_cv is None else
                            f"gamma cv {c.cv if arrival_cv is None else arrival_cv:g}") for c in classes))
    dropped = int(m - done.sum())
    if dropped:
        notes.append(f"{dropped} measured requests did not finish: larger than every instance's KV cache, or "
                     f"still running {horizon - t_end:.0f} s after the last arrival")
    return SimResult(
        model=model.name, plan_rank=rank, router=router, rate_rps=float(offered), duration_s=duration, seed=seed,
        requests=n, measured=m, completed=int(done.sum()), dropped=dropped, ttft_ms=_pct(ttft),
        tpot_ms=_pct(tpot[osl_m > 1]), ttft_attainment=_frac(ok_ttft), tpot_attainment=_frac(ok_tpot),
        attainment=_frac(ok), goodput_rps=float(ok.sum()) / window,
        predicted_goodput_rps=float(plan.get("goodput_rps") or 0.0),
        predicted={k: float(v) for k, v in (plan.get("predicted") or {}).items()},
        per_class=per_class, instances=instances, wall_s=time.perf_counter() - wall0, notes=notes)
