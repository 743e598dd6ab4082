"""The one seam between our models and the solver libraries.

- ``MilpModel`` is a plain row-form linear model (columns with bounds and integrality, rows
  ``lower <= a·x <= upper``) that the MILP builders fill; ``solve_milp`` hands it to HiGHS (``highspy``,
  the default) or to CBC (the binary bundled with ``pulp`` 3.3.x, ``PULP_CBC_CMD``), chosen by name.
- ``solve_cp_sat`` runs an OR-Tools CP-SAT model with the settings that keep it deterministic.

Limits: every MILP solve stops at ``max_nodes`` branch-and-bound nodes (HiGHS ``mip_max_nodes``, CBC
``maxNodes``), a limit that gives the same answer on every machine, and at ``time_limit_s`` of wall time, a
safety stop only: a result it cut short says so (``MilpResult.safety_stop``) because it may differ from run
to run. CP-SAT likewise stops at a deterministic time, with a wall-clock safety stop far beyond it.

Every answer is checked (``check_solution``): the vector must satisfy the model's bounds, integrality and
rows and reproduce the objective value the solver reported, each within ``CHECK_TOL`` relative. HiGHS 1.16
with presolve can report the optimum of a solve given a start yet hand back the start vector, and CBC
2.10.3's integer preprocessing now and then returns a vector that breaks an equality row; a vector that
fails the check is solved again without the start and without presolve (``plain``), and one that fails
again raises RuntimeError.

Every solve minimises, runs single-threaded unless told otherwise, and never writes to stdout: HiGHS prints
its banner on the C-level file descriptor 1 when a ``Highs`` object is built, which
``contextlib.redirect_stdout`` cannot catch, so all solver calls run inside ``quiet_stdout()``, which points
fd 1 at ``/dev/null`` with ``os.dup2`` and restores it afterwards. The libraries are imported inside the
functions so that importing ``solvers`` stays cheap.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .errors import SolverInputError

if TYPE_CHECKING:
    from ortools.sat.python import cp_model

BACKENDS = ("highs", "cbc")

# MIP optimality tolerances: stages of a lexicographic solve fix each objective at its optimum, so the
# solvers must prove optimality to zero relative gap (1e-9 absolute), not to their defaults (HiGHS: 1e-4).
MIP_REL_GAP = 0.0
MIP_ABS_GAP = 1e-9

# The check of a returned vector, relative to 1 + |value| (1 + Σ|a_k·x_k| for a row): above both backends'
# output precision (pulp reads CBC's solution file, printed with 8 significant digits: relative error ≤ 5e-8
# per value) and their feasibility tolerances (1e-6 absolute on integrality and rows, HiGHS and CBC
# defaults), far below any difference between two plans (prices and capacities are given to a few digits).
CHECK_TOL = 1e-6

# HiGHS keeps one process-wide thread pool, sized by the first run; a run asking for another thread count
# must reset it first (otherwise it fails with status "Not Set").
_highs_pool_threads: int | None = None


@dataclass
class MilpModel:
    """A linear model: columns ``col_lower <= x <= col_upper`` (``integer[j]`` marks integer columns)
    and rows ``row_lower[r] <= Σ_k row_vals[r][k]·x[row_cols[r][k]] <= row_upper[r]``."""

    col_lower: list[float] = field(default_factory=list)
    col_upper: list[float] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    row_lower: list[float] = field(default_factory=list)
    row_upper: list[float] = field(default_factory=list)
    row_cols: list[list[int]] = field(default_factory=list)
    row_vals: list[list[float]] = field(default_factory=list)

    @property
    def num_cols(self) -> int:
        return len(self.col_lower)

    def add_var(self, lower: float, upper: float, integer: bool = False) -> int:
        """Add a column and return its index."""
        self.col_lower.append(float(lower))
        self.col_upper.append(float(upper))
        self.integer.append(integer)
        return len(self.col_lower) - 1

    def add_row(self, terms: Sequence[tuple[int, float]], lower: float, upper: float) -> None:
        """Add the row ``lower <= Σ coef·x[col] <= upper`` (``terms`` are ``(col, coef)``, zeros dropped)."""
        kept = [(j, float(v)) for j, v in terms if v != 0.0]
        self.row_cols.append([j for j, _ in kept])
        self.row_vals.append([v for _, v in kept])
        self.row_lower.append(float(lower))
        self.row_upper.append(float(upper))


@dataclass(frozen=True)
class MilpResult:
    """Outcome of one solve. ``status``: "optimal", "feasible" (stopped at the node limit or the safety stop
    with a solution; ``gap`` is the relative gap to the best bound, ``inf`` where the backend does not report
    one), "infeasible", or "time_limit" (stopped by a limit without a solution). ``values`` is None without a
    solution. ``safety_stop``: the wall-clock limit ended the solve, so another run may answer differently."""

    status: str
    values: tuple[float, ...] | None
    objective: float
    gap: float
    safety_stop: bool = False


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Point file descriptor 1 at /dev/null for the duration (catches C-level output too)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def check_backend(name: str) -> None:
    """Raise SolverInputError unless ``name`` is a known MILP backend."""
    if name not in BACKENDS:
        raise SolverInputError(f"backend: unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def solve_milp(
    model: MilpModel,
    objective: dict[int, float],
    *,
    backend: str = "highs",
    time_limit_s: float = 10.0,
    max_nodes: int,
    threads: int = 1,
    start: Sequence[float] | None = None,
) -> MilpResult:
    """Minimise ``Σ objective[j]·x[j]`` over ``model`` within ``max_nodes`` branch-and-bound nodes and the
    wall-clock safety stop ``time_limit_s``.

    ``start`` is a feasible point handed to the solver as its first incumbent; with one, HiGHS skips its
    primal heuristics (they mostly rediscover the start; the search then only has to prove or improve
    it, which is markedly faster on the tie-break stages of a lexicographic solve). A returned vector that
    fails ``check_solution``, or "infeasible" despite the start, is solved again without the start and
    without presolve (see the module docstring). The models built by ``solvers`` are bounded by
    construction, so an "unbounded or infeasible" answer is reported as "infeasible".
    """
    check_backend(backend)
    cost = [0.0] * model.num_cols
    for j, v in objective.items():
        cost[j] = float(v)
    solve = _solve_highs if backend == "highs" else _solve_cbc
    began = time.perf_counter()
    with quiet_stdout():
        result = solve(model, cost, time_limit_s, max_nodes, threads, start, plain=False)
    problem = check_solution(model, cost, result)
    if problem or (start is not None and result.status == "infeasible"):
        left = time_limit_s - (time.perf_counter() - began)
        with quiet_stdout():
            result = solve(model, cost, max(left, 1e-3), max_nodes, threads, None, plain=True)
        problem = check_solution(model, cost, result)
    if problem:
        raise RuntimeError(f"{backend} returned a solution that {problem}")
    if result.values is None:
        return result
    return replace(result, values=tuple(v + 0.0 for v in result.values))  # turns -0.0 into 0.0


def check_solution(model: MilpModel, cost: list[float], result: MilpResult) -> str | None:
    """What is wrong with ``result``'s vector (None if nothing): bounds, integrality, rows and the reported
    objective, each within CHECK_TOL relative (see above)."""
    x = result.values
    if x is None:
        return None
    for j, v in enumerate(x):
        if not (model.col_lower[j] - CHECK_TOL * (1 + abs(v)) <= v <= model.col_upper[j] + CHECK_TOL * (1 + abs(v))):
            return f"puts column {j} at {v!r}, outside [{model.col_lower[j]!r}, {model.col_upper[j]!r}]"
        if model.integer[j] and abs(v - round(v)) > CHECK_TOL * (1 + abs(v)):
            return f"puts integer column {j} at {v!r}"
    for r, (cols, vals) in enumerate(zip(model.row_cols, model.row_vals)):
        terms = [a * x[j] for j, a in zip(cols, vals)]
        activity, slack = sum(terms), CHECK_TOL * (1 + sum(abs(t) for t in terms))
        if not model.row_lower[r] - slack <= activity <= model.row_upper[r] + slack:
            return f"puts row {r} at {activity!r}, outside [{model.row_lower[r]!r}, {model.row_upper[r]!r}]"
    value = sum(c * v for c, v in zip(cost, x))
    if abs(value - result.objective) > CHECK_TOL * (1 + abs(result.objective)):
        return f"has objective {value!r}, not the {result.objective!r} reported"
    return None


def _solve_highs(model: MilpModel, cost: list[float], time_limit_s: float, max_nodes: int, threads: int,
                 start: Sequence[float] | None, plain: bool) -> MilpResult:
    global _highs_pool_threads
    import highspy
    import numpy as np

    if _highs_pool_threads not in (None, threads):
        highspy.Highs.resetGlobalScheduler(True)
    _highs_pool_threads = threads
    h = highspy.Highs()
    for option, value in (
        ("output_flag", False),
        ("threads", threads),
        ("random_seed", 0),
        ("time_limit", float(time_limit_s)),
        ("mip_max_nodes", int(max_nodes)),
        ("mip_rel_gap", MIP_REL_GAP),
        ("mip_abs_gap", MIP_ABS_GAP),
        ("presolve", "off" if plain else "choose"),
    ):
        h.setOptionValue(option, value)
    lp = highspy.HighsLp()
    lp.num_col_ = model.num_cols
    lp.num_row_ = len(model.row_lower)
    lp.col_cost_ = np.array(cost, dtype=float)
    lp.col_lower_ = np.array(model.col_lower, dtype=float)  # ±math.inf is HiGHS's kHighsInf
    lp.col_upper_ = np.array(model.col_upper, dtype=float)
    lp.row_lower_ = np.array(model.row_lower, dtype=float)
    lp.row_upper_ = np.array(model.row_upper, dtype=float)
    matrix = lp.a_matrix_
    matrix.format_ = highspy.MatrixFormat.kRowwise
    matrix.num_col_ = model.num_cols
    matrix.num_row_ = len(model.row_lower)
    matrix.start_ = np.cumsum([0] + [len(c) for c in model.row_cols], dtype=np.int32)
    matrix.index_ = np.array([j for cols in model.row_cols for j in cols], dtype=np.int32)
    matrix.value_ = np.array([v for vals in model.row_vals for v in vals], dtype=float)
    lp.a_matrix_ = matrix
    kinds = highspy.HighsVarType
    lp.integrality_ = [kinds.kInteger if i else kinds.kContinuous for i in model.integer]
    h.passModel(lp)
    if start is not None:
        for option in ("mip_heuristic_run_feasibility_jump", "mip_heuristic_run_rins", "mip_heuristic_run_rens"):
            h.setOptionValue(option, False)
        h.setOptionValue("mip_heuristic_effort", 0.0)
        hint = highspy.HighsSolution()
        hint.col_value = list(start)
        hint.value_valid = True
        h.setSolution(hint)
    h.run()

    ms = highspy.HighsModelStatus
    status = h.getModelStatus()
    info = h.getInfo()
    has_solution = info.primal_solution_status == highspy.kSolutionStatusFeasible
    values = tuple(h.getSolution().col_value) if has_solution else None
    if status == ms.kOptimal:
        return MilpResult("optimal", values, info.objective_function_value, 0.0)
    if status in (ms.kInfeasible, ms.kUnboundedOrInfeasible, ms.kUnbounded):
        return MilpResult("infeasible", None, math.inf, math.inf)
    if status in (ms.kTimeLimit, ms.kSolutionLimit):  # the safety stop; the node limit
        safety_stop = status == ms.kTimeLimit
        if has_solution:
            gap = _relative_gap(info.mip_gap)
            return MilpResult("feasible", values, info.objective_function_value, gap, safety_stop)
        return MilpResult("time_limit", None, math.inf, math.inf, safety_stop)
    raise RuntimeError(f"HiGHS stopped with unexpected status {h.modelStatusToString(status)}")


def _relative_gap(gap: float) -> float:
    return gap if math.isfinite(gap) and gap >= 0 else math.inf


def _solve_cbc(model: MilpModel, cost: list[float], time_limit_s: float, max_nodes: int, threads: int,
               start: Sequence[float] | None, plain: bool) -> MilpResult:
    import pulp

    problem = pulp.LpProblem("servplan", pulp.LpMinimize)
    columns = [
        problem.add_variable(
            f"c{j}",
            lowBound=lo if math.isfinite(lo) else None,
            upBound=up if math.isfinite(up) else None,
            cat=pulp.LpInteger if integer else pulp.LpContinuous,
        )
        for j, (lo, up, integer) in enumerate(zip(model.col_lower, model.col_upper, model.integer))
    ]
    problem += pulp.LpAffineExpression([(columns[j], v) for j, v in enumerate(cost) if v != 0.0])
    for r, (cols, vals) in enumerate(zip(model.row_cols, model.row_vals)):
        lo, up = model.row_lower[r], model.row_upper[r]
        if not cols:  # pulp cannot state a row without variables: it is the constant test lo <= 0 <= up
            if lo <= 0.0 <= up:
                continue
            return MilpResult("infeasible", None, math.inf, math.inf)
        expr = pulp.LpAffineExpression([(columns[j], v) for j, v in zip(cols, vals)])
        if lo == up:
            problem += expr == lo, f"r{r}"
            continue
        if math.isfinite(lo):
            problem += expr >= lo, f"r{r}_lo"
        if math.isfinite(up):
            problem += expr <= up, f"r{r}_up"
    if start is not None:
        for j, (column, value) in enumerate(zip(columns, start)):
            value = min(max(value, model.col_lower[j]), model.col_upper[j])  # solver noise past a bound
            column.setInitialValue(round(value) if model.integer[j] else value)
    with warnings.catch_warnings():  # PULP_CBC_CMD is deprecated for pulp 4, which we pin below
        warnings.simplefilter("ignore", DeprecationWarning)
        solver = pulp.PULP_CBC_CMD(
            msg=False,
            timeLimit=time_limit_s,
            maxNodes=int(max_nodes),
            gapRel=MIP_REL_GAP,
            gapAbs=MIP_ABS_GAP,
            # "-threads 1" switches CBC 2.10.3 into its threaded code, which stalls now and then (coin-or/Cbc#640);
            # without the option CBC runs on one thread
            threads=threads if threads > 1 else None,
            warmStart=start is not None,
            presolve=False if plain else None,
            options=["preprocess off"] if plain else [],
        )
        began = time.perf_counter()
        problem.solve(solver)
        # pulp does not say which limit stopped CBC: only the wall clock can have stopped it this late
        safety_stop = time.perf_counter() - began >= time_limit_s
    proven_empty = (pulp.LpStatusInfeasible, pulp.LpStatusUnbounded)
    if problem.status in proven_empty or problem.sol_status in (pulp.LpSolutionInfeasible, pulp.LpSolutionUnbounded):
        return MilpResult("infeasible", None, math.inf, math.inf)
    if problem.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        return MilpResult("time_limit", None, math.inf, math.inf, safety_stop)
    values = tuple(float(c.varValue or 0.0) for c in columns)
    value = sum(c * v for c, v in zip(cost, values))
    if problem.sol_status == pulp.LpSolutionOptimal:
        return MilpResult("optimal", values, value, 0.0)
    return MilpResult("feasible", values, value, math.inf, safety_stop)  # pulp does not report CBC's bound


def solve_cp_sat(model: cp_model.CpModel, *, deterministic_time_s: float, seed: int,
                 hard_time_limit_s: float) -> tuple[cp_model.CpSolver, str, bool]:
    """Solve an OR-Tools CP-SAT ``model`` deterministically; return ``(solver, status_name, safety_stop)``.

    One worker and a fixed ``random_seed`` make CP-SAT deterministic; the search stops after
    ``deterministic_time_s`` units of CP-SAT's deterministic clock (roughly seconds, but reproducible),
    with ``hard_time_limit_s`` of wall time only as a safety stop against overloaded machines:
    ``safety_stop`` is True when it ended the search (the answer may then differ from run to run).
    ``status_name`` is CP-SAT's: OPTIMAL, FEASIBLE, INFEASIBLE, MODEL_INVALID or UNKNOWN.
    """
    from ortools.sat.python import cp_model

    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = seed
    solver.parameters.max_deterministic_time = deterministic_time_s
    solver.parameters.max_time_in_seconds = hard_time_limit_s
    solver.parameters.log_search_progress = False
    with quiet_stdout():
        status = solver.solve(model)
    name = solver.status_name(status)
    stopped = name in ("FEASIBLE", "UNKNOWN")  # a limit ended the search
    # stopped short of the deterministic limit: the wall clock did it (CP-SAT stops a little before the wall
    # limit, so wall_time is no test; the deterministic time just passes its limit when that one stops it)
    return solver, name, stopped and solver.deterministic_time < deterministic_time_s
