"""Optimisation models for capacity planning, importable without the CLI.

The models know nothing about LLMs: they take capacities, costs and inventories and return integer
decisions as plain dataclasses. Solver libraries (highspy, pulp, ortools) are imported only when a solve
runs. See docs/solvers.md.
"""

from .errors import SolverInputError
from .expert_loads import load_expert_counts_csv, zipf_loads
from .experts import ExpertPlacement, ExpertProblem, place_experts
from .mix import solve_mix
from .mix_problem import InstanceType, MixProblem, MixSolution, RequestClass

__all__ = [
    "InstanceType",
    "RequestClass",
    "MixProblem",
    "MixSolution",
    "solve_mix",
    "SolverInputError",
    "ExpertProblem",
    "ExpertPlacement",
    "place_experts",
    "zipf_loads",
    "load_expert_counts_csv",
]
