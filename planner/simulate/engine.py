"""One serving instance in the simulation, and the event loop that drives all of them.

  engine     continuous batching, one iteration at a time, timed by the planner's own step model
             (`Setup.step`). Agg: every running decode plus waiting prompts' tokens up to the chunk budget
             C − (decodes), FCFS, a prompt may span iterations (chunked prefill: Sarathi-Serve, vLLM V1 greedy
             scheduling); a prompt's first token comes at the end of its last chunk's iteration and it decodes
             from the next one. Prefill: waiting prompts batched up to the budget. Decode: every running sequence.
  KV memory  a request is admitted (FCFS, head of line blocks) when the instance has room for its whole KV
             (isl + osl tokens; isl on a prefill instance, held until its hand-off ends) and fewer than
             max_num_seqs·dp sequences run: the capacity the planner's max_batch uses, without preemption.
  P/D        when a prompt's last chunk ends on a prefill instance its KV ships to a decode instance
             (serving.kv_handoff_s, DistServe); the first token counts as out when the hand-off ends.

Speed: one Python step per engine iteration (never per token; decode completions sit in a heap keyed by the
iteration they end on); iteration times are memoised per instance type on (decode batch, mean decode context
rounded to 64 tokens, prefill tokens (exact below 256, else rounded to 16), prompt length rounded to 16).
Per-request state lives in plain lists (SimState), the fastest element access from Python.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from enum import IntEnum
from typing import TYPE_CHECKING

from planner.capacity.estimate import Setup
from planner.perf.step import StepShape

if TYPE_CHECKING:
    from planner.simulate.router import GroupPicker

CTX_BUCKET = 64  # decode context rounding of the iteration-time cache (tokens)
PROMPT_BUCKET = 16  # prompt-length rounding of the iteration-time cache (tokens)
PREFILL_BUCKET = 16  # prefill-token rounding of the cache from 256 tokens up (below: exact)
_INF = math.inf

StepKey = tuple[int, int, int, int]  # (decode batch, context bucket, prefill tokens key, prompt-length bucket)


class EngineRole(IntEnum):
    AGG = 0
    PREFILL = 1
    DECODE = 2


class Event(IntEnum):
    ITERATION_END = 1  # (t, seq, ITERATION_END, engine index, 0)
    KV_LANDED = 2  # (t, seq, KV_LANDED, request, prefill engine index): a P -> D hand-off ends


# module constants: an enum class attribute lookup costs ~0.4 µs, a global ~0.03 µs (hot loop)
AGG, PREFILL, DECODE = EngineRole.AGG, EngineRole.PREFILL, EngineRole.DECODE
ITERATION_END, KV_LANDED = Event.ITERATION_END, Event.KV_LANDED


class SimState:
    """Per-request state (indexed by request, in arrival order) and the event heap."""
    __slots__ = ("arrival_s", "isl", "osl", "kv_full", "kv_prompt", "first_token_s", "finish_s", "heap", "seq",
                 "window_start_s", "window_end_s")

    def __init__(self, arrival_s: list[float], isl: list[int], osl: list[int], kv_full: list[int],
                 kv_prompt: list[int], window_start_s: float, window_end_s: float) -> None:
        n = len(arrival_s)
        self.arrival_s, self.isl, self.osl = arrival_s, isl, osl
        self.kv_full = kv_full  # KV tokens a request reserves on an agg or decode instance (its whole sequence)
        self.kv_prompt = kv_prompt  # ... and on a prefill instance (its prompt)
        self.first_token_s: list[float] = [_INF] * n
        self.finish_s: list[float] = [_INF] * n
        self.heap: list[tuple[float, int, int, int, int]] = []
        self.seq = 0  # tie-break of equal event times: insertion order
        self.window_start_s, self.window_end_s = window_start_s, window_end_s  # the measured window

    def push(self, t: float, kind: Event, a: int, b: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, a, b))


class Engine:
    """One serving instance: continuous batching, one iteration in flight at a time."""
    __slots__ = ("idx", "name", "role", "group", "gpu_name", "setup", "chunk", "max_seqs", "kv_cap", "step_memo",
                 "handoff_s", "waiting", "prefilling", "n_prompts_done", "n_seqs", "kv_used", "n_decode",
                 "sum_context", "finishing", "iterations", "busy", "t_start_s", "prompt_tokens_left",
                 "output_tokens_left", "s_per_prompt_token", "s_per_output_token", "busy_s", "busy_all_s",
                 "decode_seq_s", "kv_token_s", "iter_decode", "routed")
    idx: int
    name: str
    role: EngineRole
    group: int  # index of the plan's instance group
    gpu_name: str
    setup: Setup
    chunk: int  # token budget of an iteration
    max_seqs: int  # max_num_seqs · dp
    kv_cap: int  # KV tokens the instance holds
    step_memo: dict[StepKey, float]  # iteration times, shared by identical instance types
    handoff_s: Callable[[int], float] | None  # prefill: KV hand-off time of an isl-token prompt
    waiting: deque[int]  # routed requests not yet admitted, FCFS
    prefilling: deque[list[int]]  # [request, prompt tokens not yet scheduled] of admitted prompts, FCFS
    n_prompts_done: int  # prompts whose last chunk runs in the iteration in flight
    n_seqs: int  # admitted sequences
    kv_used: int  # KV tokens reserved
    n_decode: int  # decoding sequences
    sum_context: int  # their summed context (tokens)
    finishing: list[tuple[int, int]]  # heap of (iteration at whose end the request finishes, request)
    iterations: int  # iterations ended
    busy: bool  # an iteration is in flight
    t_start_s: float  # when it started
    prompt_tokens_left: float  # router's outstanding work: prompt tokens routed here not yet scheduled
    output_tokens_left: float  # ... and output tokens not yet produced
    s_per_prompt_token: float  # router's speed weights (0 where the role does not do that work)
    s_per_output_token: float
    busy_s: float  # busy time inside the measured window
    busy_all_s: float  # busy time over the whole run
    decode_seq_s: float  # ∫ decode batch dt over busy time
    kv_token_s: float  # ∫ reserved KV tokens dt over the measured window
    iter_decode: int  # decode sequences of the iteration in flight
    routed: int  # requests routed here (whole run)

    def __init__(self, idx: int, name: str, role: EngineRole, group: int, setup: Setup,
                 step_memo: dict[StepKey, float], handoff_s: Callable[[int], float] | None,
                 s_per_prompt_token: float, s_per_output_token: float) -> None:
        self.idx, self.name, self.role, self.group, self.setup = idx, name, role, group, setup
        self.gpu_name = setup.gpu.name
        self.chunk = setup.chunk
        self.max_seqs = setup.engine.max_num_seqs * setup.par.dp
        self.kv_cap = setup.memory(1.0).kv_tokens
        self.step_memo = step_memo
        self.handoff_s = handoff_s
        self.s_per_prompt_token, self.s_per_output_token = s_per_prompt_token, s_per_output_token
        self.waiting = deque()
        self.prefilling = deque()
        self.finishing = []
        self.n_prompts_done = self.n_seqs = self.kv_used = self.n_decode = self.sum_context = 0
        self.iterations = self.routed = self.iter_decode = 0
        self.busy = False
        self.t_start_s = self.busy_s = self.busy_all_s = 0.0
        self.prompt_tokens_left = self.output_tokens_left = self.decode_seq_s = self.kv_token_s = 0.0

    def start(self, now: float, sim: SimState) -> None:
        """Begin the next iteration (admission, then the batch), or go idle."""
        role = self.role
        w = self.waiting
        if w:
            need = sim.kv_prompt if role == PREFILL else sim.kv_full
            isl = sim.isl
            while w and self.n_seqs < self.max_seqs:
                r = w[0]
                k = need[r]
                if self.kv_used + k > self.kv_cap:
                    break
                w.popleft()
                self.kv_used += k
                self.n_seqs += 1
                if role == DECODE:  # joins this iteration; its osl − 1 tokens end with iteration it + osl − 1
                    self.n_decode += 1
                    self.sum_context += isl[r] + 1
                    heapq.heappush(self.finishing, (self.iterations + sim.osl[r] - 1, r))
                else:
                    self.prefilling.append([r, isl[r]])
        n_dec = self.n_decode
        ptoks = 0  # prefill tokens of this iteration
        prompt_bucket = 0  # their token-weighted mean prompt length, in PROMPT_BUCKETs
        if self.prefilling:
            budget = self.chunk - n_dec
            weighted = 0
            n_done = 0
            isl = sim.isl
            for e in self.prefilling:
                if budget <= 0:
                    break
                rem = e[1]
                take = rem if rem < budget else budget
                e[1] = rem - take
                budget -= take
                ptoks += take
                weighted += take * isl[e[0]]
                if take < rem:
                    break
                n_done += 1
            self.n_prompts_done = n_done
            if ptoks:
                prompt_bucket = int(weighted / (ptoks * PROMPT_BUCKET) + 0.5)
        if not n_dec and not ptoks:
            self.busy = False
            return
        ctx_bucket = (self.sum_context + n_dec * (CTX_BUCKET // 2)) // (n_dec * CTX_BUCKET) if n_dec else 0
        ptoks_key = ptoks if ptoks < 256 else (ptoks + PREFILL_BUCKET // 2) // PREFILL_BUCKET * PREFILL_BUCKET
        key = (n_dec, ctx_bucket, ptoks_key, prompt_bucket)
        dt = self.step_memo.get(key)
        if dt is None:
            dt = self.step_memo[key] = self._step_s(n_dec, ctx_bucket, ptoks_key, prompt_bucket)
        self.prompt_tokens_left -= ptoks
        self.iter_decode = n_dec
        self.busy = True
        self.t_start_s = now
        sim.push(now + dt, ITERATION_END, self.idx)

    def _step_s(self, n_dec: int, ctx_bucket: int, ptoks: int, prompt_bucket: int) -> float:
        ctx = ctx_bucket * CTX_BUCKET if ctx_bucket else CTX_BUCKET / 2
        return self.setup.step(StepShape(n_dec, ctx if n_dec else 0.0, ptoks,
                                         max(prompt_bucket, 1) * PROMPT_BUCKET if ptoks else 0.0)).time_s

    def end(self, now: float, sim: SimState) -> None:
        """The iteration in flight ends at `now`: tokens out, finished requests leave, then the next one."""
        a = self.t_start_s if self.t_start_s > sim.window_start_s else sim.window_start_s
        b = now if now < sim.window_end_s else sim.window_end_s
        if b > a:
            self.busy_s += b - a
            self.kv_token_s += (b - a) * self.kv_used
        dt = now - self.t_start_s
        self.busy_all_s += dt
        self.decode_seq_s += dt * self.iter_decode
        it = self.iterations = self.iterations + 1
        n_dec = self.n_decode
        isl, osl = sim.isl, sim.osl
        if n_dec:
            self.sum_context += n_dec
            self.output_tokens_left -= n_dec
            fin = self.finishing
            need = sim.kv_full
            finish = sim.finish_s
            while fin and fin[0][0] <= it:
                r = heapq.heappop(fin)[1]
                finish[r] = now
                self.n_decode -= 1
                self.sum_context -= isl[r] + osl[r]
                self.kv_used -= need[r]
                self.n_seqs -= 1
        nd = self.n_prompts_done
        if nd:
            self.n_prompts_done = 0
            pre = self.prefilling
            first = sim.first_token_s
            if self.role == AGG:
                for _ in range(nd):
                    r = pre.popleft()[0]
                    first[r] = now
                    self.output_tokens_left -= 1
                    if osl[r] > 1:
                        self.n_decode += 1
                        self.sum_context += isl[r] + 1
                        heapq.heappush(self.finishing, (it + osl[r] - 1, r))
                    else:
                        sim.finish_s[r] = now
                        self.kv_used -= sim.kv_full[r]
                        self.n_seqs -= 1
            else:  # prefill: the KV ships to a decode instance; the first token is out when it lands
                handoff_s = self.handoff_s
                assert handoff_s is not None
                for _ in range(nd):
                    r = pre.popleft()[0]
                    h = handoff_s(isl[r])
                    first[r] = now + h
                    sim.push(now + h, KV_LANDED, r, self.idx)
        self.start(now, sim)


def entry_work(e: Engine) -> float:
    """Outstanding work on an entry (agg / prefill) instance, in seconds at its speed weights."""
    return e.prompt_tokens_left * e.s_per_prompt_token + e.output_tokens_left * e.s_per_output_token


def decode_work(e: Engine) -> float:
    return e.output_tokens_left


def run_events(sim: SimState, engines: list[Engine], entry: list[GroupPicker], exits: list[GroupPicker],
               cls: list[int], horizon_s: float) -> None:
    """The event loop: arrivals (in order, outside the heap), iteration ends, KV hand-offs landing."""
    heap = sim.heap
    heappop = heapq.heappop
    arrival, isl, osl, kv_full, kv_prompt, finish = (sim.arrival_s, sim.isl, sim.osl, sim.kv_full, sim.kv_prompt,
                                                     sim.finish_s)
    n = len(arrival)
    ai = 0
    while True:
        t_arr = arrival[ai] if ai < n else _INF
        if heap and heap[0][0] <= t_arr:
            t, _, kind, a, b = heappop(heap)
            if t > horizon_s:
                return
            if kind == ITERATION_END:
                engines[a].end(t, sim)
                continue
            src = engines[b]  # request a's KV has left prefill engine b
            src.kv_used -= kv_prompt[a]
            src.n_seqs -= 1
            if not src.busy and src.waiting:
                src.start(t, sim)
            if osl[a] <= 1:
                finish[a] = t
                continue
            dst = exits[cls[a]].choose(kv_full[a], kv_full[a], decode_work)
            if dst is None:
                continue  # no decode instance holds its KV: dropped
            dst.output_tokens_left += osl[a] - 1
            dst.routed += 1
            dst.waiting.append(a)
            if not dst.busy:
                dst.start(t, sim)
            continue
        if ai >= n:
            return
        r = ai
        ai += 1
        dst = entry[cls[r]].choose(kv_full[r], kv_prompt[r], entry_work)
        if dst is None:
            continue  # larger than any instance's KV: dropped
        dst.prompt_tokens_left += isl[r]
        if dst.role == AGG:
            dst.output_tokens_left += osl[r]
        dst.routed += 1
        dst.waiting.append(r)
        if not dst.busy:
            dst.start(t_arr, sim)
