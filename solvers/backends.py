"""The one seam between our models and the solver libraries.

- ``MilpModel`` is a plain row-form linear model (columns with bounds and integrality, rows
  ``lower <= a·x <= upper``) that the MILP builders fill; ``solve_milp`` hands it to HiGHS (``highspy``,
  the default) or to CBC (the binary bundled with ``pulp`` 3.3.x, ``PULP_CBC_CMD``), chosen by name.
- ``solve_cp_sat`` runs an OR-Tools CP-SAT model with the settings that keep it deterministic.

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
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from .errors import SolverInputError

BACKENDS = ("highs", "cbc")

# MIP optimality tolerances: stages of a lexicographic solve fix each objective at its optimum, so the
# solvers must prove optimality to zero relative gap (1e-9 absolute), not to their defaults (HiGHS: 1e-4).
MIP_REL_GAP = 0.0
MIP_ABS_GAP = 1e-9

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
    """Outcome of one solve. ``status``: "optimal", "feasible" (stopped at the time limit with a solution;
    ``gap`` is the relative gap to the best bound, ``inf`` where the backend does not report one),
    "infeasible", or "time_limit" (stopped without a solution). ``values`` is None without a solution."""

    status: str
    values: tuple[float, ...] | None
    objective: float
    gap: float


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
    threads: int = 1,
    start: Sequence[float] | None = None,
) -> MilpResult:
    """Minimise ``Σ objective[j]·x[j]`` over ``model``.

    ``start`` is a feasible point handed to the solver as its first incumbent; with one, HiGHS skips its
    primal heuristics (they mostly rediscover the start; the search then only has to prove or improve
    it, which is markedly faster on the tie-break stages of a lexicographic solve). The models built by
    ``solvers`` are bounded by construction, so an "unbounded or infeasible" answer is reported as
    "infeasible".
    """
    check_backend(backend)
    cost = [0.0] * model.num_cols
    for j, v in objective.items():
        cost[j] = float(v)
    solve = _solve_highs if backend == "highs" else _solve_cbc
    with quiet_stdout():
        status, values, value, gap = solve(model, cost, time_limit_s, threads, start)
    if values is not None:
        values = tuple(v + 0.0 for v in values)  # turns -0.0 into 0.0
    return MilpResult(status, values, value, gap)


def _solve_highs(model: MilpModel, cost: list[float], time_limit_s: float, threads: int, start):
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
        ("mip_rel_gap", MIP_REL_GAP),
        ("mip_abs_gap", MIP_ABS_GAP),
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
        return "optimal", values, info.objective_function_value, 0.0
    if status in (ms.kInfeasible, ms.kUnboundedOrInfeasible, ms.kUnbounded):
        return "infeasible", None, math.inf, math.inf
    if status == ms.kTimeLimit:
        if has_solution:
            return "feasible", values, info.objective_function_value, _relative_gap(info.mip_gap)
        return "time_limit", None, math.inf, math.inf
    raise RuntimeError(f"HiGHS stopped with unexpected status {h.modelStatusToString(status)}")


def _relative_gap(gap: float) -> float:
    return gap if math.isfinite(gap) and gap >= 0 else math.inf


def _solve_cbc(model: MilpModel, cost: list[float], time_limit_s: float, threads: int, start):
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
            return "infeasible", None, math.inf, math.inf
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
            gapRel=MIP_REL_GAP,
            gapAbs=MIP_ABS_GAP,
            threads=threads,
            warmStart=start is not None,
        )
        problem.solve(solver)
    proven_empty = (pulp.LpStatusInfeasible, pulp.LpStatusUnbounded)
    if problem.status in proven_empty or problem.sol_status in (pulp.LpSolutionInfeasible, pulp.LpSolutionUnbounded):
        return "infeasible", None, math.inf, math.inf
    if problem.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        return "time_limit", None, math.inf, math.inf
    values = tuple(float(c.varValue or 0.0) for c in columns)
    value = sum(c * v for c, v in zip(cost, values))
    if problem.sol_status == pulp.LpSolutionOptimal:
        return "optimal", values, value, 0.0
    return "feasible", values, value, math.inf  # pulp does not report CBC's best bound


def solve_cp_sat(model, *, deterministic_time_s: float, seed: int, hard_time_limit_s: float):
    """Solve an OR-Tools CP-SAT ``model`` deterministically; return ``(solver, status_name)``.

    One worker and a fixed ``random_seed`` make CP-SAT deterministic; the search stops after
    ``deterministic_time_s`` units of CP-SAT's deterministic clock (roughly seconds, but reproducible),
    with ``hard_time_limit_s`` of wall time only as a safety net against slow machines. ``status_name`` is
    CP-SAT's: OPTIMAL, FEASIBLE, INFEASIBLE, MODEL_INVALID or UNKNOWN.
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
    return solver, solver.status_name(status)
