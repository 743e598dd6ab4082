"""What the fleet-mix MILP takes and returns (plain dataclasses), and the checks on its input."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from .errors import SolverInputError

ROLES = frozenset({"prefill", "decode"})
OBJECTIVES = ("goodput", "cost")
SINGLE_GPU_TYPE = "single_gpu_type"  # the family label that means "one GPU type only", not a type label


@dataclass(frozen=True)
class InstanceType:
    """One deployable instance shape (GPU type, parallelism, role) and what it sustains."""

    name: str  # unique id; canonical tie-break order sorts by it
    gpus: dict[str, int]  # GPU type -> GPUs per instance, e.g. {"h100_sxm": 8}
    cost_usd_per_h: float
    roles: frozenset[str]  # {"prefill"}, {"decode"} or {"prefill", "decode"} (= collocated)
    capacity_rps: dict[str, float]  # class -> req/s one instance sustains for that class alone (0/missing = none)
    family: str = ""  # free label, e.g. "agg" / "disagg"
    kv_egress_bytes_per_s: float = float("inf")  # prefill-only types: KV bytes/s shipped to decode instances
    min_count: int = 0
    max_count: int | None = None

    @property
    def collocated(self) -> bool:
        return self.roles == ROLES

    @property
    def total_gpus(self) -> int:
        return sum(self.gpus.values())


@dataclass(frozen=True)
class RequestClass:
    """A stream of similar requests."""

    name: str
    rate_rps: float  # demand; for the goodput objective it is the mix that α scales
    kv_bytes_per_request: float = 0.0  # KV shipped prefill -> decode per request when disaggregated


@dataclass(frozen=True)
class MixProblem:
    """Which instances to buy for a demand, under an optional inventory and budget.

    ``inventory`` lists every GPU type that is available (a GPU type it does not name has none);
    ``None`` means unlimited GPUs of every type.
    """

    instance_types: tuple[InstanceType, ...]
    classes: tuple[RequestClass, ...]
    inventory: dict[str, int] | None = None  # GPU type -> available GPUs (None = unlimited)
    budget_usd_per_h: float | None = None
    objective: str = "goodput"  # "goodput" (max α) | "cost" (min $/h at α = 1)
    same_gpu_for_pd: bool = False  # prefill-only and decode-only instances all on one GPU type
    max_alpha: float | None = None  # optional cap on α (goodput objective)
    kv_link_bytes_per_s: float | None = None  # all prefill-only types together -> the decode pool (None = no cap)


@dataclass(frozen=True)
class MixSolution:
    """One plan. ``time_s`` is the only field that differs between identical runs, unless ``safety_stop``."""

    status: str  # "optimal" | "feasible" (a limit stopped a stage) | "infeasible" | "time_limit" (no plan)
    objective: float  # α for goodput, $/h for cost
    alpha: float
    cost_usd_per_h: float
    gpus: dict[str, int]
    counts: dict[str, int]  # instance type name -> count (only nonzero, sorted keys)
    routing: dict[tuple[str, str], float]  # (instance type, class) -> req/s
    gap: float
    time_s: float
    backend: str
    binding: str | None  # constraint family that makes it infeasible / limits the optimum
    hint: str | None  # what would make it feasible / what limits it, in words
    family: str = ""  # which family this solution is the best of ("" for the main top-k list)
    safety_stop: bool = False  # the wall-clock safety stop (time_limit_s) cut a solve short: may vary by run


def validate(problem: MixProblem) -> None:
    """Raise SolverInputError, naming the field, for anything the model cannot take."""
    if problem.objective not in OBJECTIVES:
        raise SolverInputError(f"objective: {problem.objective!r} is not one of {', '.join(OBJECTIVES)}")
    _validate_classes(problem.classes)
    _validate_types(problem.instance_types, {c.name for c in problem.classes})
    if problem.inventory is not None:
        if not isinstance(problem.inventory, dict):
            raise SolverInputError("inventory: must be a dict of GPU type -> available GPUs, or None")
        for gpu, available in sorted(problem.inventory.items()):
            _require_count(available, f"inventory[{gpu!r}]")
    if problem.budget_usd_per_h is not None:
        _require_nonnegative(problem.budget_usd_per_h, "budget_usd_per_h")
    if problem.kv_link_bytes_per_s is not None:
        _require_nonnegative(problem.kv_link_bytes_per_s, "kv_link_bytes_per_s")
        if problem.kv_link_bytes_per_s == 0:
            raise SolverInputError("kv_link_bytes_per_s: must be > 0 (or None for no cap)")
    if problem.max_alpha is not None:
        _require_nonnegative(problem.max_alpha, "max_alpha")
        if problem.max_alpha == 0:
            raise SolverInputError("max_alpha: must be > 0 (or None for no cap)")


def _validate_classes(classes: tuple[RequestClass, ...]) -> None:
    if not classes:
        raise SolverInputError("classes: at least one request class is needed")
    seen: set[str] = set()
    for k, c in enumerate(classes):
        if not isinstance(c.name, str) or not c.name or c.name in seen:
            raise SolverInputError(f"classes[{k}].name: {c.name!r} is empty or repeated")
        seen.add(c.name)
        _require_nonnegative(c.rate_rps, f"classes[{c.name!r}].rate_rps")
        _require_nonnegative(c.kv_bytes_per_request, f"classes[{c.name!r}].kv_bytes_per_request")
    if sum(c.rate_rps for c in classes) == 0:
        raise SolverInputError("classes: every rate_rps is 0, so there is no demand to plan for")


def _validate_types(types: tuple[InstanceType, ...], class_names: set[str]) -> None:
    if not types:
        raise SolverInputError("instance_types: at least one instance type is needed")
    seen: set[str] = set()
    for k, t in enumerate(types):
        if not isinstance(t.name, str) or not t.name or t.name in seen:
            raise SolverInputError(f"instance_types[{k}].name: {t.name!r} is empty or repeated")
        seen.add(t.name)
        where = f"instance_types[{t.name!r}]"
        if not isinstance(t.gpus, dict) or not t.gpus:
            raise SolverInputError(f"{where}.gpus: must map at least one GPU type to a GPU count")
        for gpu, n in sorted(t.gpus.items()):
            _require_count(n, f"{where}.gpus[{gpu!r}]")
            if n == 0:
                raise SolverInputError(f"{where}.gpus[{gpu!r}]: must be at least 1")
        _require_nonnegative(t.cost_usd_per_h, f"{where}.cost_usd_per_h")
        if not t.roles or not set(t.roles) <= ROLES:
            raise SolverInputError(f"{where}.roles: must be a non-empty subset of {{'prefill', 'decode'}}")
        if not isinstance(t.capacity_rps, dict):
            raise SolverInputError(f"{where}.capacity_rps: must be a dict of request class -> req/s")
        for cls, cap in sorted(t.capacity_rps.items()):
            if cls not in class_names:
                raise SolverInputError(f"{where}.capacity_rps: unknown request class {cls!r}")
            _require_nonnegative(cap, f"{where}.capacity_rps[{cls!r}]")
        egress = t.kv_egress_bytes_per_s
        if isinstance(egress, bool) or not isinstance(egress, numbers.Real) or math.isnan(egress) or egress <= 0:
            raise SolverInputError(f"{where}.kv_egress_bytes_per_s: must be > 0 (inf = unlimited), got {egress!r}")
        _require_count(t.min_count, f"{where}.min_count")
        if t.max_count is not None:
            _require_count(t.max_count, f"{where}.max_count")
            if t.max_count < t.min_count:
                raise SolverInputError(f"{where}.max_count: {t.max_count} is below min_count {t.min_count}")


def _require_nonnegative(value: float, field: str) -> None:
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        raise SolverInputError(f"{field}: must be a finite number >= 0, got {value!r}")


def _require_count(value: int, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise SolverInputError(f"{field}: must be an integer >= 0, got {value!r}")
