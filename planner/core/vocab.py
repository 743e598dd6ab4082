"""The planner's vocabulary: the roles an instance plays, the plan families, the objectives and the search modes.

`StrEnum` members are their strings: `Role.agg == "agg"`, `str(Role.agg) == f"{Role.agg}" == "agg"` and JSON
writes `"agg"`, so outputs read exactly as before the names became types.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar


class Role(StrEnum):
    """What one instance does (docs/architecture.md, "Data flow")."""
    agg = "agg"  # collocated prefill + decode (chunked prefill)
    prefill = "prefill"  # prefill pool of a P/D split
    decode = "decode"  # decode pool of a P/D split
    multiplex = "multiplex"  # intra-GPU P/D: prefill and decode share the GPU's SMs


class Family(StrEnum):
    """The plan families whose best plan is reported next to the ranked list."""
    agg = "agg"
    disagg = "disagg"
    single_gpu_type = "single_gpu_type"
    multiplex = "multiplex"


class Objective(StrEnum):
    goodput = "goodput"  # max req/s within the SLOs
    cost = "cost"  # min $/h at the demand
    energy = "energy"  # min W at the demand


class Mode(StrEnum):
    """Which instance roles the search considers."""
    auto = "auto"  # agg and P/D, and plans that mix them
    agg = "agg"
    disagg = "disagg"
    multiplex = "multiplex"  # auto's instance types + intra-GPU P/D ones


class Engine(StrEnum):
    """Serving engines with a profile in hwdb/engines.yaml."""
    vllm = "vllm"
    sglang = "sglang"
    trtllm = "trtllm"


E = TypeVar("E", bound=StrEnum)
FAMILY_LABEL: dict[str, str] = {Family.agg: "agg", Family.disagg: "P/D", Family.single_gpu_type: "1-type",
                                 Family.multiplex: "mux"}  # the "#" column of the plan tables


def choice(enum: type[E], value: str, where: str) -> E:
    """`value` as a member of `enum`, or PlannerInputError naming `where` and the choices."""
    from planner.core.errors import PlannerInputError

    try:
        return enum(value)
    except ValueError:
        raise PlannerInputError(f"{where}: expected {', '.join(enum)}, got {value!r}") from None
