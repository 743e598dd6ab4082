"""Sane bounds on every number a user can hand the planner (issue 11: one input contract, checked before use).

Each bound is far outside any real deployment, yet small enough that no solver, simulator or formula downstream
overflows, allocates gigabytes or runs for hours. A value outside it is bad input (exit 2, naming the field).
"""

from __future__ import annotations

import math

from planner.core.errors import PlannerInputError

MAX_GPUS_PER_TYPE = 100_000  # the largest announced training clusters are ~10⁵ GPUs in total
MAX_TOKENS = 2 ** 24  # ISL / OSL: 16× the longest context any bundled or known model accepts (1M)
MAX_CHUNK_TOKENS = 1_048_576  # chunked-prefill budget: 128× vLLM's 8192 default
MAX_RATE_RPS = 1_000_000  # 10 req/s per GPU on every one of MAX_GPUS_PER_TYPE GPUs
MAX_BATCH = 1_000_000  # concurrent sequences on one instance; engines cap at a few thousand
MAX_DURATION_S = 86_400  # an SLO or a simulated window of one day
MAX_SIM_REQUESTS = 5_000_000  # simulate: rate × duration (about a minute of simulation per million)
MAX_TIME_LIMIT_S = 3_600  # solver safety stop: an hour
MAX_BUDGET_USD_PER_H = 10_000_000  # MAX_GPUS_PER_TYPE GPUs at $100/h
MAX_POWER_W = 10_000  # a board power cap; the largest accelerator boards draw ~2 kW
MAX_BANDWIDTH_GBPS = 1_000_000  # a P–D link, GB/s: 20,000 × a 400 Gb/s NIC
MAX_KV_COMPRESSION = 1_000  # a transfer codec ratio; int2 from bf16 is 8×
MAX_ARRIVAL_CV = 10.0  # gamma shape 1/cv² = 0.01; BurstGPT traces measure cv ≈ 1–4; the simulator draws
#                        λT + 6·cv·√(λT) gaps, so cv = 10⁶ would allocate gigabytes
MAX_SEED = 2 ** 32 - 1  # numpy / CP-SAT seeds are unsigned 32-bit
MAX_ZIPF_S = 10.0  # at s = 10 the hottest expert already takes > 99.9 % of the load


def bounded(value, field: str, lo: float, hi: float, *, lo_open: bool = False, integer: bool = False,
            unit: str = ""):
    """`value` if it is a finite number in [lo, hi] (lo excluded when lo_open), else PlannerInputError naming
    `field` and the bound."""
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise PlannerInputError(f"{field}: expected a number, got '{value}'") from None
    if not math.isfinite(x):
        raise PlannerInputError(f"{field}: must be a finite number, got '{value}'")
    if integer and x != int(x):
        raise PlannerInputError(f"{field}: must be a whole number, got '{value}'")
    if x < lo or (lo_open and x == lo):
        raise PlannerInputError(f"{field}: must be {'above' if lo_open else 'at least'} {number_text(lo)}{unit}, got "
                                f"'{value}'")
    if x > hi:
        raise PlannerInputError(f"{field}: must be at most {number_text(hi)}{unit}, got '{value}'")
    return int(x) if integer else x


def number_text(x: float) -> str:
    return f"{x:,.0f}" if x == int(x) else f"{x:g}"


def check_context(model, isl: int, osl: int, field: str) -> None:
    """ISL + OSL within the model's context (HF `max_position_embeddings`)."""
    if isl + osl > model.max_context:
        raise PlannerInputError(f"{field}: isl + osl = {isl + osl} tokens exceeds {model.name}'s context of "
                                f"{model.max_context} tokens (max_position_embeddings)")
