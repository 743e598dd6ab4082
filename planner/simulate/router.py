"""Routing in the simulation, and the plan's instance groups wired up as engines.

Each class's requests go to the instance groups that serve it in the plan's proportions (smooth weighted round
robin), then within the group to the instance with the least outstanding work: remaining prompt tokens · (s per
prefill token) + remaining output tokens · (s per output token at the batch the plan expects) of everything
routed to it. A finished prompt goes the same way to a decode instance (least remaining output tokens).
router="round_robin" / "random" replace the within-group choice (random also picks the group at random, by
weight): random routing gives each instance Poisson arrivals, the per-instance analytical model's assumption.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from enum import IntEnum

from planner.capacity.estimate import Setup
from planner.capacity.serving import kv_handoff_s
from planner.core.errors import PlannerInputError
from planner.core.vocab import Role
from planner.perf.step import StepShape
from planner.simulate.engine import DECODE, PREFILL, Engine, EngineRole, StepKey
from planner.simulate.plan_io import InstanceGroup, SimClass

ROUTERS = ("least_work", "round_robin", "random")


class RouterMode(IntEnum):
    LEAST_WORK = 0
    ROUND_ROBIN = 1
    RANDOM = 2


LEAST_WORK, ROUND_ROBIN, RANDOM = RouterMode  # module constants: cheaper than enum attribute lookups
_INF = float("inf")
WeightedGroup = tuple[float, list[Engine]]  # (the plan's rate of the class on the group, its engines)


class GroupPicker:
    """Splits one class's requests over the instance groups that serve it in the plan's proportions (smooth
    weighted round robin, or weighted random for router="random"), then picks the instance within the group:
    least outstanding work, round robin, or uniformly at random."""
    __slots__ = ("groups", "weights", "current", "total", "mode", "rng", "next")

    def __init__(self, groups: list[WeightedGroup], mode: RouterMode, rng: random.Random) -> None:
        self.groups = [m for _, m in groups]
        self.weights = [w for w, _ in groups]
        self.current = [0.0] * len(groups)
        self.total = sum(self.weights)
        self.mode, self.rng = mode, rng
        self.next = [0] * len(groups)  # round robin position within each group

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

    def choose(self, need: int, need_prefill: int, work: Callable[[Engine], float]) -> Engine | None:
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


def _handoff(group: InstanceGroup) -> Callable[[int], float] | None:
    """A prefill group's KV hand-off time of an isl-token prompt (memoised per group), or None."""
    if group.role != Role.prefill:
        return None
    if not group.kv_handoff:  # a multiplexed partition: the decode partition starts at once
        return lambda isl: 0.0
    memo: dict[int, float] = {}
    setup = group.setup

    def handoff_s(isl: int) -> float:
        v = memo.get(isl)
        if v is None:
            v = memo[isl] = kv_handoff_s(setup, isl)
        return v

    return handoff_s


def _speed_weights(group: InstanceGroup, served: list[SimClass], weights: dict[str, float]) -> tuple[float, float]:
    """The least-work router's (s per prompt token, s per output token) on one instance of the group: its
    chunk's prefill time per token, and the decode step per sequence at the batch the plan expects there
    (Little's law at its planned load with the TPOT SLO)."""
    setup = group.setup
    per_inst = sum(weights[c.name] for c in served) / group.count
    isl_m = sum(c.isl for c in served) / len(served)
    osl_m = sum(c.osl for c in served) / len(served)
    b_ref = max(1.0, min(setup.engine.max_num_seqs * setup.par.dp,
                         per_inst * osl_m * min(c.tpot_s for c in served)))
    prompt = setup.step(StepShape(prefill_tokens=setup.chunk, prefill_seq_len=isl_m)).time_s / setup.chunk
    output = setup.step(StepShape(decode_seqs=b_ref, decode_context=isl_m + osl_m / 2)).time_s / b_ref
    return prompt, output


def build_engines(groups: list[InstanceGroup], classes: list[SimClass], mode: RouterMode,
                  seed: int) -> tuple[list[Engine], list[GroupPicker], list[GroupPicker]]:
    """The plan's instances as engines, and per class the pickers of its entry and decode instances."""
    by_name = {c.name: i for i, c in enumerate(classes)}
    engines: list[Engine] = []
    entry: list[list[WeightedGroup]] = [[] for _ in classes]  # per class: groups that take new requests
    exits: list[list[WeightedGroup]] = [[] for _ in classes]  # decode groups
    memos: dict[Setup, dict[StepKey, float]] = {}  # iteration times, shared by identical instance types (Setup)
    for g, group in enumerate(groups):
        if group.count <= 0:
            continue
        role = EngineRole[group.role.upper()]
        memo = memos.setdefault(group.setup, {})
        handoff = _handoff(group)
        weights = {c.name: float(group.load_rps.get(c.name, 0) or 0) for c in classes}
        served = [c for c in classes if weights[c.name] > 0] or classes
        s_prompt, s_output = _speed_weights(group, served, weights)
        label = f"{group.label} {group.setup.gpu.name} {group.setup.par.label()}"
        members = [Engine(len(engines) + k, f"{label} #{k + 1}", role, g, group.setup, memo, handoff,
                          s_prompt if role != DECODE else 0.0, s_output if role != PREFILL else 0.0)
                   for k in range(group.count)]
        engines += members
        for c in served:
            (exits if role == DECODE else entry)[by_name[c.name]].append((weights[c.name] or 1.0, members))
    for ci, c in enumerate(classes):
        if not entry[ci]:
            raise PlannerInputError(f"plan: no agg or prefill instance serves class '{c.name}'")
        if any(m[0].role == PREFILL for _, m in entry[ci]) and not exits[ci]:
            raise PlannerInputError(f"plan: class '{c.name}' has prefill instances but no decode instance")
    rng = random.Random(seed * 1_000_003 + 17)
    return engines, [GroupPicker(x, mode, rng) for x in entry], [GroupPicker(x, mode, rng) for x in exits]
