"""Expert placement for expert parallelism (MoETuner-style), solved with OR-Tools CP-SAT.

E experts of one MoE layer go to R EP ranks with ``slots_per_rank`` slots each; each copy of an expert
takes one slot. Expert e carries load L_e (tokens or a fraction). Without ``replicate`` every expert has
one copy. With ``replicate`` the spare slots (R·slots − E) hold extra copies of hot experts: they go one
at a time to the expert with the largest per-copy load L_e/n_e, at most R copies each (DeepSeek EPLB's
rule, ``copy_counts``), and an expert's load is split evenly among its n_e copies, as engines route to
replicas. The copy counts are fixed by that rule; the solver then chooses where the copies go,
minimising

    max_r load_r  +  traffic_weight · Σ_{e<f} A[e,f] · [e and f share no rank]

with load_r = Σ_{e on r} L_e / n_e and A the optional symmetric co-activation matrix (how often a token
needs both e and f). The CP-SAT model (``_build``):

- x[e,r] ∈ {0,1}: a copy of e sits on rank r.
- Copies: Σ_r x[e,r] = n_e (so copies of one expert sit on distinct ranks).
- Slots: Σ_e x[e,r] ≤ slots_per_rank.
- Load: max_load ≥ Σ_e (L_e/n_e)·x[e,r] for every rank r.
- Traffic (pairs with A[e,f] > 0 only, so a sparse matrix stays cheap: booleans grow as pairs × ranks):
  together[e,f] ≤ Σ_r z[e,f,r] with z[e,f,r] ≤ x[e,r] and z[e,f,r] ≤ x[f,r].
- Symmetry breaking (ranks are interchangeable): the hottest expert has a copy on rank 0; without
  replication, the j-th hottest expert sits on a rank ≤ j.

Integer scaling: CP-SAT takes integer coefficients only. Loads are scaled so that the total load is
``LOAD_UNITS`` = 10^6 units (one unit = 1e-6 of the total load), k = LOAD_UNITS / Σ L, and rounded: the
per-copy load is round(k·L_e/n_e), the traffic coefficient round(k·traffic_weight·A[e,f]). Rounding moves
the objective by at most half a unit per copy and per pair, so "optimal" means optimal for the scaled
model, and terms below half a unit vanish. Reported loads, imbalance and gap are recomputed from the
placement in floating point.

Determinism: one worker, a fixed seed and a deterministic time limit (``max_deterministic_time``), with a
wall-clock limit only as a safety stop: ``WALL_FACTOR`` times the deterministic limit, and never under
``SAFETY_FLOOR_S``. A deterministic unit is 1-2 s of one idle core, and 12 s of a 2-core machine at load
8 (measured), so the safety stop fires only on a machine slower still (and then
``ExpertPlacement.safety_stop`` says so, because the placement may differ from run to run).
The greedy LPT placement is the solver's starting hint (AddHint) and is returned whenever the solver ends
with nothing better, so the result is never worse than greedy LPT. ``gap`` = (objective − best bound) / objective.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .backends import solve_cp_sat
from .errors import SolverInputError

if TYPE_CHECKING:
    from ortools.sat.python import cp_model

Matrix = tuple[tuple[float, ...], ...]  # E×E, row by row
Placement = tuple[tuple[int, ...], ...]  # per rank: the expert ids it holds

LOAD_UNITS = 1_000_000
WALL_FACTOR = 20.0  # wall-clock safety stop: this many seconds per deterministic-time unit (see above)
SAFETY_FLOOR_S = 60.0  # and never less than this many seconds
MAX_SCALED = 2**50  # keeps every scaled sum far inside CP-SAT's int64


@dataclass(frozen=True)
class ExpertProblem:
    """One MoE layer's experts and the EP ranks to place them on."""

    loads: tuple[float, ...]  # per-expert load (tokens or fraction), length E
    ranks: int  # R
    slots_per_rank: int  # ≥ ceil(E/R); extra slots allow replication
    coactivation: Matrix | None = None  # E×E symmetric, optional
    traffic_weight: float = 0.0
    replicate: bool = False


@dataclass(frozen=True)
class ExpertPlacement:
    """Where each expert lives and how even the ranks' loads are."""

    placement: Placement  # per rank: expert ids (replicas may appear on several ranks)
    rank_loads: tuple[float, ...]
    imbalance: float  # max / mean rank load
    round_robin_imbalance: float  # the same for expert e on rank e mod R
    status: str  # "optimal" | "feasible" | "time_limit" (greedy LPT returned: the solver found nothing)
    gap: float
    time_s: float
    safety_stop: bool = False  # the wall-clock safety stop ended the search: may differ from run to run


def place_experts(problem: ExpertProblem, *, time_limit_s: float = 5.0, seed: int = 0) -> ExpertPlacement:
    """Place experts on ranks minimising max rank load (+ weighted cross-rank traffic); see the module doc.

    ``time_limit_s`` is CP-SAT deterministic time (about seconds on a current CPU, but the same on every
    run); the wall clock stops the search only at ``safety_stop_s(time_limit_s)`` (``safety_stop``). ``seed`` is
    CP-SAT's random seed. Raises SolverInputError, naming the field, for bad input.
    """
    began = time.perf_counter()
    _validate(problem, time_limit_s, seed)
    scale = LOAD_UNITS / sum(problem.loads)
    greedy = greedy_lpt(problem)
    model, x = _build(problem, scale, greedy)
    solver, status, safety_stop = solve_cp_sat(
        model, deterministic_time_s=time_limit_s, seed=seed, hard_time_limit_s=safety_stop_s(time_limit_s)
    )
    if status not in ("OPTIMAL", "FEASIBLE", "UNKNOWN"):
        raise RuntimeError(f"CP-SAT answered {status} for an expert placement that greedy LPT solves")
    chosen, state = greedy, "time_limit"
    if status != "UNKNOWN":
        found = tuple(
            tuple(e for e in range(len(problem.loads)) if (e, r) in x and solver.value(x[e, r]))
            for r in range(problem.ranks)
        )
        state = "optimal" if status == "OPTIMAL" else "feasible"
        if placement_objective(problem, found) <= placement_objective(problem, greedy):
            chosen = found
        elif state == "optimal":
            state = "feasible"  # optimal for the rounded model, but greedy is better in exact arithmetic
    value = placement_objective(problem, chosen)
    bound = solver.best_objective_bound / scale
    gap = 0.0 if state == "optimal" else min(1.0, max(0.0, (value - bound) / value))
    placement = tuple(sorted(chosen))  # canonical rank order: ranks are interchangeable
    loads = rank_loads(problem.loads, placement)
    return ExpertPlacement(
        placement=placement,
        rank_loads=loads,
        imbalance=_imbalance(problem.loads, loads),
        round_robin_imbalance=_imbalance(problem.loads, rank_loads(problem.loads, round_robin(problem))),
        status=state,
        gap=gap,
        time_s=time.perf_counter() - began,
        safety_stop=safety_stop,
    )


def safety_stop_s(deterministic_time_s: float) -> float:
    """The wall-clock safety stop for a deterministic time limit (see the module docstring)."""
    return max(SAFETY_FLOOR_S, WALL_FACTOR * deterministic_time_s)


def copy_counts(problem: ExpertProblem) -> tuple[int, ...]:
    """n_e: one copy each; with ``replicate``, each spare slot in turn gives one more copy to the expert
    with the largest per-copy load L_e/n_e (lowest id on ties), at most R copies per expert."""
    loads = problem.loads
    copies = [1] * len(loads)
    if problem.replicate:
        for _ in range(problem.ranks * problem.slots_per_rank - len(loads)):
            growing = [e for e in range(len(loads)) if copies[e] < problem.ranks and loads[e] > 0]
            if not growing:
                break
            copies[max(growing, key=lambda e: (loads[e] / copies[e], -e))] += 1
    return tuple(copies)


def greedy_lpt(problem: ExpertProblem) -> Placement:
    """Longest-processing-time greedy, the solver's warm start and the floor it must beat.

    Copies (``copy_counts``), largest per-copy load first, each onto the least-loaded rank (lowest index
    on ties) with a free slot and no copy of the same expert. When every rank with a free slot already
    holds the expert, another expert moves from a full rank to such a rank to make room (one always can:
    the full rank holds more distinct experts than the other). Rank 0 is then swapped with the first
    rank holding the hottest expert, so the result obeys the model's symmetry breaking.
    """
    loads, ranks, slots = problem.loads, problem.ranks, problem.slots_per_rank
    copies = copy_counts(problem)
    share = [loads[e] / copies[e] for e in range(len(loads))]
    placed: list[list[int]] = [[] for _ in range(ranks)]
    load = [0.0] * ranks
    for e in sorted(range(len(loads)), key=lambda e: (-share[e], e)):
        for _ in range(copies[e]):
            free = [r for r in range(ranks) if len(placed[r]) < slots and e not in placed[r]]
            if not free:
                roomy = next(r for r in range(ranks) if len(placed[r]) < slots)
                donor = min((r for r in range(ranks) if e not in placed[r]), key=lambda r: (load[r], r))
                moved = next(f for f in placed[donor] if f not in placed[roomy])
                placed[donor].remove(moved)
                placed[roomy].append(moved)
                load[donor] -= share[moved]
                load[roomy] += share[moved]
                free = [donor]
            r = min(free, key=lambda r: (load[r], r))
            placed[r].append(e)
            load[r] += share[e]
    hottest = _hot_order(loads)[0]
    first = next(r for r in range(ranks) if hottest in placed[r])
    placed[0], placed[first] = placed[first], placed[0]
    return tuple(tuple(sorted(p)) for p in placed)


def round_robin(problem: ExpertProblem) -> Placement:
    """The baseline: expert e on rank e mod R."""
    return tuple(tuple(range(r, len(problem.loads), problem.ranks)) for r in range(problem.ranks))


def rank_loads(loads: tuple[float, ...], placement: Placement) -> tuple[float, ...]:
    """Load of each rank, each expert's load split evenly among its copies."""
    copies = [0] * len(loads)
    for experts in placement:
        for e in experts:
            copies[e] += 1
    return tuple(sum((loads[e] / copies[e] for e in experts), 0.0) for experts in placement)


def placement_objective(problem: ExpertProblem, placement: Placement) -> float:
    """max rank load + traffic_weight · co-activation of the pairs that share no rank (floating point)."""
    objective = max(rank_loads(problem.loads, placement))
    if problem.coactivation is not None and problem.traffic_weight > 0:
        ranks_of = _ranks_of(placement, len(problem.loads))
        apart = sum(a for e, f, a in _pairs(problem.coactivation) if not ranks_of[e] & ranks_of[f])
        objective += problem.traffic_weight * apart
    return objective


def _build(problem: ExpertProblem, scale: float,
           hint: Placement) -> tuple[cp_model.CpModel, dict[tuple[int, int], cp_model.IntVar]]:
    """The CP-SAT model of the module docstring; returns (model, x) with x[e, r] for the allowed pairs."""
    from ortools.sat.python import cp_model

    loads, ranks, slots = problem.loads, problem.ranks, problem.slots_per_rank
    experts = len(loads)
    copies = copy_counts(problem)
    unit = [round(scale * loads[e] / copies[e]) for e in range(experts)]
    weights = []
    if problem.coactivation is not None and problem.traffic_weight > 0:
        weights = [(e, f, round(scale * problem.traffic_weight * a)) for e, f, a in _pairs(problem.coactivation)]
        weights = [(e, f, w) for e, f, w in weights if w > 0]
    if sum(n * u for n, u in zip(copies, unit)) + sum(w for _, _, w in weights) > MAX_SCALED:
        raise SolverInputError("traffic_weight: traffic_weight × coactivation is too large next to the loads")

    model = cp_model.CpModel()
    hot = _hot_order(loads)
    ranks_of = _ranks_of(hint, experts)  # every variable gets its value in the hint placement
    x = {}
    for position, e in enumerate(hot):  # symmetry breaking: j-th hottest on a rank ≤ j (no replication)
        for r in range(ranks if problem.replicate else min(ranks, position + 1)):
            x[e, r] = model.new_bool_var(f"x_{e}_{r}")
            model.add_hint(x[e, r], r in ranks_of[e])
    model.add(x[hot[0], 0] == 1)  # symmetry breaking: the hottest expert has a copy on rank 0
    for e in range(experts):  # copies
        model.add(sum(x[e, r] for r in range(ranks) if (e, r) in x) == copies[e])
    for r in range(ranks):  # slots
        model.add(sum(x[e, r] for e in range(experts) if (e, r) in x) <= slots)
    total = sum(n * u for n, u in zip(copies, unit))
    max_load = model.new_int_var(max([math.ceil(total / ranks)] + unit), total, "max_load")
    model.add_hint(max_load, max(sum(unit[e] for e in on_rank) for on_rank in hint))
    for r in range(ranks):  # load
        model.add(max_load >= sum(unit[e] * x[e, r] for e in range(experts) if (e, r) in x))
    apart = []
    for e, f, w in weights:  # traffic
        together = model.new_bool_var(f"together_{e}_{f}")
        model.add_hint(together, bool(ranks_of[e] & ranks_of[f]))
        both = []
        for r in range(ranks):
            if (e, r) in x and (f, r) in x:
                z = model.new_bool_var(f"z_{e}_{f}_{r}")
                model.add_hint(z, r in ranks_of[e] and r in ranks_of[f])
                model.add_implication(z, x[e, r])
                model.add_implication(z, x[f, r])
                both.append(z)
        model.add(together <= sum(both))
        apart.append(w * (1 - together))
    model.minimize(max_load + sum(apart))
    return model, x


def _hot_order(loads: tuple[float, ...]) -> list[int]:
    return sorted(range(len(loads)), key=lambda e: (-loads[e], e))


def _pairs(matrix: Matrix) -> list[tuple[int, int, float]]:
    """(e, f, A[e,f]) for e < f with A[e,f] > 0."""
    return [(e, f, row[f]) for e, row in enumerate(matrix) for f in range(e + 1, len(row)) if row[f] > 0]


def _ranks_of(placement: Placement, experts: int) -> list[set[int]]:
    where: list[set[int]] = [set() for _ in range(experts)]
    for r, on_rank in enumerate(placement):
        for e in on_rank:
            where[e].add(r)
    return where


def _imbalance(loads: tuple[float, ...], per_rank: tuple[float, ...]) -> float:
    return max(per_rank) / (sum(loads) / len(per_rank))


def _validate(problem: ExpertProblem, time_limit_s: float, seed: int) -> None:
    loads = problem.loads
    if not isinstance(loads, (tuple, list)) or not loads:
        raise SolverInputError("loads: must be a non-empty sequence of per-expert loads")
    for e, load in enumerate(loads):
        if isinstance(load, bool) or not isinstance(load, numbers.Real) or not math.isfinite(load) or load < 0:
            raise SolverInputError(f"loads[{e}]: must be a finite number >= 0, got {load!r}")
    if sum(loads) == 0:
        raise SolverInputError("loads: every load is 0, so there is nothing to balance")
    for field in ("ranks", "slots_per_rank"):
        value = getattr(problem, field)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise SolverInputError(f"{field}: must be an integer >= 1, got {value!r}")
    if problem.ranks * problem.slots_per_rank < len(loads):
        need = math.ceil(len(loads) / problem.ranks)
        raise SolverInputError(f"slots_per_rank: {len(loads)} experts on {problem.ranks} ranks need at least {need}")
    weight = problem.traffic_weight
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) or weight < 0:
        raise SolverInputError(f"traffic_weight: must be a finite number >= 0, got {weight!r}")
    if problem.coactivation is not None:
        _validate_coactivation(problem.coactivation, len(loads))
    elif weight > 0:
        raise SolverInputError("traffic_weight: a traffic weight needs a coactivation matrix")
    if not isinstance(problem.replicate, bool):
        raise SolverInputError(f"replicate: must be True or False, got {problem.replicate!r}")
    number = isinstance(time_limit_s, numbers.Real) and not isinstance(time_limit_s, bool)
    if not number or not math.isfinite(time_limit_s) or time_limit_s <= 0:
        raise SolverInputError(f"time_limit_s: must be a finite number > 0, got {time_limit_s!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**31:
        raise SolverInputError(f"seed: must be an integer in [0, 2**31), got {seed!r}")


def _validate_coactivation(matrix: Matrix, experts: int) -> None:
    if len(matrix) != experts or any(len(row) != experts for row in matrix):
        raise SolverInputError(f"coactivation: must be a {experts}×{experts} matrix")
    for e, row in enumerate(matrix):
        for f, a in enumerate(row):
            if isinstance(a, bool) or not isinstance(a, numbers.Real) or not math.isfinite(a) or a < 0:
                raise SolverInputError(f"coactivation[{e}][{f}]: must be a finite number >= 0, got {a!r}")
            if a != matrix[f][e]:
                raise SolverInputError(f"coactivation[{e}][{f}]: the matrix must be symmetric")
