"""Specification of the SLO-aware serving model (planner/capacity/serving.py, planner/capacity/queueing.py).

The M/D/1 waiting time is checked against an independent high-precision evaluation of Crommelin's formula
(Decimal arithmetic, written here) and against Pollaczek–Khinchine's mean; the per-role capacities against the
properties any goodput definition must have.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwdb
from planner.capacity import queueing as qu
from planner.capacity import serving as sv
from planner.capacity.estimate import Setup
from planner.core.model import load_model
from planner.core.parallel import ParallelConfig
from planner.core.workload import RequestClass, Slo

SETTINGS = settings(max_examples=40, deadline=None)


# ---- reference M/D/1 waiting time ------------------------------------------------------------------------------

def crommelin_cdf(t: Decimal, rho: Fraction, digits: int = 100) -> Decimal:
    """P(W ≤ t) of M/D/1 with service time 1 and arrival rate ρ (Crommelin 1932):
    (1 − ρ) Σ_{k=0}^{⌊t⌋} [ρ(k − t)]^k / k! · e^{−ρ(k − t)}, in `digits`-digit decimal arithmetic so that the
    alternating sum (terms up to e^{2ρt}) cancels exactly enough."""
    with localcontext() as ctx:
        ctx.prec = digits
        r = Decimal(rho.numerator) / Decimal(rho.denominator)
        total, factorial = Decimal(0), Decimal(1)
        for k in range(int(t) + 1):
            if k:
                factorial *= k
            x = r * (Decimal(k) - t)
            total += (x ** k if k else Decimal(1)) / factorial * (-x).exp()
        return (1 - r) * total


def crommelin_quantile(p: Fraction, rho: Fraction) -> float:
    """Smallest t with P(W ≤ t) ≥ p, by bisection on the exact CDF (service time 1)."""
    target = Decimal(p.numerator) / Decimal(p.denominator)
    if crommelin_cdf(Decimal(0), rho) >= target:
        return 0.0
    lo, hi = Decimal(0), Decimal(1)
    while crommelin_cdf(hi, rho) < target:
        hi *= 2
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if crommelin_cdf(mid, rho) < target else (lo, mid)
    return float(hi)


@pytest.mark.parametrize("rho", [0.2, 0.5, 0.8, 0.95])
def test_md1_probability_of_not_waiting_is_one_minus_rho(rho):
    for service in (1.0, 0.02):
        assert qu.md1_wait_cdf(0.0, rho / service, service) == pytest.approx(1 - rho, rel=1e-12)


@pytest.mark.parametrize("rho", ["0.2", "0.5", "0.8", "0.95"])
@pytest.mark.parametrize("p", ["0.5", "0.9", "0.99"])
def test_md1_wait_percentile_matches_exact_crommelin(rho, p):
    exact = crommelin_quantile(Fraction(p), Fraction(rho))  # in service times
    service = 0.05  # 50 ms prompts: the quantile scales with S
    got = qu.md1_wait_percentile(float(p), float(rho) / service, service)
    if exact == 0.0:
        assert got == 0.0  # P(W = 0) = 1 − ρ already covers p
    else:
        assert got == pytest.approx(exact * service, rel=1e-3)


@pytest.mark.parametrize("rho", ["0.3", "0.7", "0.9"])
@pytest.mark.parametrize("t", ["0.5", "1", "2.5", "6"])
def test_md1_wait_cdf_matches_exact_crommelin_where_float_is_safe(rho, t):
    assert qu.md1_wait_cdf(float(t), float(rho), 1.0) == pytest.approx(
        float(crommelin_cdf(Decimal(t), Fraction(rho))), abs=1e-7)


@pytest.mark.parametrize("rho", [0.3, 0.5, 0.7, 0.9])
def test_md1_mean_wait_integrates_to_pollaczek_khinchine(rho):
    """E[W] = ∫ (1 − F(t)) dt = ρS / (2(1 − ρ)). The CDF is integrated numerically up to 8S (where the float sum
    is exact) and the rest from the module's own exponential tail C·e^{−θt}, so this also checks the tail."""
    service, horizon, n = 1.0, 8.0, 8000
    h = horizon / n
    tail = [1 - qu.md1_wait_cdf(i * h, rho / service, service) for i in range(n + 1)]
    body = h * (sum(tail) - (tail[0] + tail[-1]) / 2)
    c, theta = qu.md1_tail_decay(rho)
    rest = c * math.exp(-theta * horizon) / theta
    assert 1 - qu.md1_wait_cdf(horizon, rho, 1.0) == pytest.approx(c * math.exp(-theta * horizon), rel=1e-3)
    assert body + rest == pytest.approx(rho * service / (2 * (1 - rho)), rel=2e-3)


def test_md1_wait_percentile_is_infinite_at_or_beyond_saturation():
    assert qu.md1_wait_percentile(0.9, 1.0, 1.0) == math.inf
    assert qu.md1_wait_percentile(0.9, 2.0, 1.0) == math.inf
    assert qu.md1_wait_percentile(0.9, 0.0, 1.0) == 0.0


@SETTINGS
@given(rho=st.floats(0.05, 0.97), p=st.floats(0.5, 0.995), dp=st.floats(0.0, 0.004), drho=st.floats(0.0, 0.02))
def test_md1_wait_percentile_grows_with_load_and_with_the_percentile(rho, p, dp, drho):
    w = qu.md1_wait_percentile(p, rho, 1.0)
    assert qu.md1_wait_percentile(min(p + dp, 0.999), rho, 1.0) >= w * (1 - 1e-9)
    assert qu.md1_wait_percentile(p, min(rho + drho, 0.98), 1.0) >= w * (1 - 1e-9)


# ---- capacities ------------------------------------------------------------------------------------------------

def cls(isl: int, osl: int, slo: Slo) -> RequestClass:
    return RequestClass("c", isl, osl, 0.0, slo)


def make_setup(model: str, gpu: str, par: ParallelConfig = ParallelConfig(), engine: str = "vllm") -> Setup:
    g = hwdb.load_gpu(gpu)
    return Setup(load_model(model), g, par, hwdb.load_engine(engine).for_gpu(g))


SETUPS = {
    "8b-h100": make_setup("llama-3.1-8b", "h100_sxm"),
    "70b-h100-tp4": make_setup("llama-3.1-70b", "h100_sxm", ParallelConfig(4)),
    "qwen30b-h200": make_setup("qwen3-30b-a3b", "h200_sxm"),
    "mixtral-a100-tp2": make_setup("mixtral-8x7b", "a100_80g", ParallelConfig(2)),
    "8b-l40s-sglang": make_setup("llama-3.1-8b", "l40s", engine="sglang"),
}


@SETTINGS
@given(name=st.sampled_from(sorted(SETUPS)), isl=st.sampled_from([128, 512, 2048, 8000]),
       osl=st.sampled_from([16, 128, 512, 2000]), ttft=st.floats(50, 20000), tpot=st.floats(5, 200),
       p=st.sampled_from([50.0, 90.0, 99.0]), ttft_cut=st.floats(0.2, 1.0), tpot_cut=st.floats(0.2, 1.0))
def test_a_tighter_slo_never_raises_any_roles_capacity(name, isl, osl, ttft, tpot, p, ttft_cut, tpot_cut):
    s = SETUPS[name]
    loose, tight = Slo(ttft, tpot, p), Slo(ttft * ttft_cut, tpot * tpot_cut, p)
    assert sv.prefill_capacity(s, cls(isl, 1, tight)).rate_rps <= sv.prefill_capacity(s, cls(isl, 1, loose)).rate_rps
    assert sv.decode_capacity(s, cls(isl, osl, tight)).rate_rps <= sv.decode_capacity(s, cls(isl, osl, loose)).rate_rps
    assert sv.collocated_capacity(s, cls(isl, osl, tight)).rate_rps <= \
        sv.collocated_capacity(s, cls(isl, osl, loose)).rate_rps


@pytest.mark.parametrize("name", ["8b-h100", "70b-h100-tp4", "mixtral-a100-tp2"])
def test_capacity_meets_its_slo_at_the_reported_rate(name):
    s = SETUPS[name]
    slo = Slo(1500.0, 40.0, 90.0)
    pre = sv.prefill_capacity(s, cls(2048, 1, slo))
    assert pre.rate_rps > 0 and pre.ttft_ms <= slo.ttft_ms * (1 + 1e-9)
    dec = sv.decode_capacity(s, cls(2048, 256, slo))
    assert dec.rate_rps > 0 and dec.tpot_ms <= slo.tpot_ms * (1 + 1e-9)
    col = sv.collocated_capacity(s, cls(2048, 256, slo))
    assert col.rate_rps > 0
    assert col.ttft_ms <= slo.ttft_ms * (1 + 1e-9) and col.tpot_ms <= slo.tpot_ms * (1 + 1e-9)
    ttft, tpot = sv.latency_at(s, "collocated", cls(2048, 256, slo), col.rate_rps)
    assert (ttft, tpot) == pytest.approx((col.ttft_ms, col.tpot_ms), rel=1e-9)


@pytest.mark.parametrize("name,isl,osl", [("70b-h100-tp4", 32000, 1000), ("8b-h100", 32000, 1000),
                                          ("mixtral-a100-tp2", 16000, 2000)])
def test_long_contexts_with_a_loose_tpot_are_limited_by_kv_memory(name, isl, osl):
    s = SETUPS[name]
    loose = Slo(60000.0, 1000.0)
    cap = sv.decode_capacity(s, cls(isl, osl, loose))
    max_batch = s.memory(isl + osl).max_batch
    assert max_batch < s.engine.max_num_seqs
    assert cap.binding == "kv_memory"
    assert cap.rate_rps > 0
    assert qu.batch_at_percentile(cap.batch, loose.z) == pytest.approx(max_batch, rel=1e-3)  # p90 batch fills it


def test_a_huge_batch_cap_with_short_requests_binds_on_max_num_seqs():
    s = SETUPS["8b-h100"]  # 1024 sequences of 160 tokens fit easily in 53 GB of KV
    cap = sv.decode_capacity(s, cls(128, 32, Slo(60000.0, 1000.0)))
    assert cap.binding == "max_num_seqs"


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_an_slo_below_the_single_request_floor_gives_zero_rate(name):
    s = SETUPS[name]
    impossible = Slo(ttft_ms=1.0, tpot_ms=0.1)
    for cap in (sv.prefill_capacity(s, cls(2048, 1, impossible)), sv.decode_capacity(s, cls(2048, 256, impossible)),
                sv.collocated_capacity(s, cls(2048, 256, impossible))):
        assert cap.rate_rps == 0.0
        assert cap.binding == "slo_floor"


def test_decode_floor_reports_the_batch_one_tpot():
    s = SETUPS["70b-h100-tp4"]
    cap = sv.decode_capacity(s, cls(2048, 256, Slo(1000.0, 1.0)))
    assert cap.binding == "slo_floor"
    assert cap.tpot_ms > 1.0  # the reason: a single sequence's step is already slower than the SLO
