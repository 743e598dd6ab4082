"""Intra-GPU P/D multiplexing (issue 8; semi-PD, DuetServe, Nexus): `--mode multiplex` adds instance types whose
SMs are split between a prefill partition (share f) and a decode partition (1 − f). Each test would fail if the
lever were ignored."""

import pytest

import hwdb
from planner.capacity.estimate import Setup
from planner.capacity.serving import decode_capacity, kv_handoff_s, prefill_capacity, prefill_ttft_s
from planner.core.errors import PlannerInputError
from planner.core.model import load_model
from planner.core.parallel import ParallelConfig
from planner.core.workload import RequestClass, Slo
from planner.levers.multiplex import SM_FRACTIONS, multiplex_capacity, partition_setups
from planner.perf.step import StepShape
from planner.render.report import launch_for, result_json
from planner.search.candidates import PREFILL_BUDGET_TOKENS
from planner.search.optimize import optimize
from planner.search.scenario import build_request
from planner.simulate import simulate_plan

SLO = Slo(2000.0, 50.0, 90.0)
CLS = RequestClass("default", 2048, 256, 0.0, SLO)


@pytest.fixture(scope="module")
def setup():
    g = hwdb.load_gpu("h100_sxm")
    return Setup(load_model("llama-3.1-70b"), g, ParallelConfig(4, 1, 1, 1), hwdb.load_engine("vllm").for_gpu(g),
                 chunk_tokens=PREFILL_BUDGET_TOKENS)


def test_partitions_split_compute_and_share_bandwidth(setup):
    pre, dec = partition_setups(setup, 0.25)
    assert pre.gpu.peak_flops("bf16") == pytest.approx(0.25 * setup.gpu.peak_flops("bf16"))
    assert dec.gpu.peak_flops("bf16") == pytest.approx(0.75 * setup.gpu.peak_flops("bf16"))
    assert pre.gpu.mem_bw_gbps == pytest.approx(0.5 * setup.gpu.mem_bw_gbps)  # 25% of SMs < saturation
    assert dec.gpu.mem_bw_gbps < setup.gpu.mem_bw_gbps  # prefill's byte demand is charged to decode
    big = StepShape(prefill_tokens=8192, prefill_seq_len=2048)  # compute-bound GEMMs ~1/f slower (TP comm is not)
    assert 2.5 < pre.step(big).gpu_s / setup.step(big).gpu_s <= 1 / 0.25
    small = StepShape(decode_seqs=16, decode_context=2048)  # memory-bound: bandwidth, not SMs, sets it
    assert dec.step(small).gpu_s < setup.step(small).gpu_s * 1.2


def test_capacity_is_the_rate_both_partitions_meet_without_kv_transfer(setup):
    for f in SM_FRACTIONS:
        pre, dec = partition_setups(setup, f)
        cap = multiplex_capacity(setup, f, CLS)
        p = prefill_capacity(pre, CLS, handoff=False).rate_rps
        d = decode_capacity(dec, CLS).rate_rps
        assert cap.rate_rps == pytest.approx(min(p, d))
        assert cap.ttft_ms <= SLO.ttft_ms * 1.001 and cap.tpot_ms <= SLO.tpot_ms * 1.001
    pre, _ = partition_setups(setup, 0.5)
    with_kv = prefill_ttft_s(pre, CLS, 0.0)
    assert prefill_ttft_s(pre, CLS, 0.0, handoff=False) == pytest.approx(
        with_kv - kv_handoff_s(pre, CLS.isl))


def test_the_sm_fraction_matters(setup):
    caps = [multiplex_capacity(setup, f, CLS).rate_rps for f in SM_FRACTIONS]
    assert max(caps) > 1.2 * min(caps)


@pytest.fixture(scope="module")
def docs():
    out = {}
    for mode in ("auto", "multiplex"):
        req = build_request("llama-3.1-70b", slo="ttft=2s,tpot=50ms,p=90", workload="isl=2048,osl=256",
                            gpus="h100_sxm:8", mode=mode)
        out[mode] = (req, optimize(req))
    return out


def test_multiplex_mode_ranks_multiplex_against_collocated_and_disaggregated(docs):
    req, res = docs["multiplex"]
    doc = result_json(res, req)
    families = {p["family"] for p in doc["family_bests"]}
    assert {"agg", "disagg", "multiplex"} <= families
    best = doc["plans"][0]
    assert best["mode"] == "multiplex"
    inst = best["instances"][0]
    assert inst["role"] == "multiplex" and inst["sm_fraction"] in SM_FRACTIONS
    # here the split beats both collocated and disaggregated on the same 8 GPUs
    auto_best = docs["auto"][1].plans[0].goodput_rps
    assert best["goodput_rps"] > 1.15 * auto_best


def test_auto_mode_has_no_multiplex_instances(docs):
    req, res = docs["auto"]
    assert all(i.role != "multiplex" for p in res.plans + res.family_bests for i in p.instances)
    assert all("sm_fraction" not in i for p in result_json(res, req)["plans"] for i in p["instances"])
    assert all(c.role != "multiplex" for c in res.candidates)


def test_launch_note_says_no_upstream_engine_flag_exists(docs):
    req, res = docs["multiplex"]
    cmds = [c for c in launch_for(res.plans[0], req) if c.role == "multiplex"]
    assert cmds and "semi-PD" in cmds[0].note
    assert "neither vLLM nor SGLang has an upstream SM-partition flag" in cmds[0].note
    assert not any(c.role == "router" for c in launch_for(res.plans[0], req))


def test_simulate_runs_a_multiplex_plan_and_it_holds_its_goodput(docs):
    req, res = docs["multiplex"]
    doc = result_json(res, req)
    g = doc["plans"][0]["goodput_rps"]
    att = sum(simulate_plan(doc, rate_rps=g, duration_s=1200.0, seed=s).attainment for s in (0, 1, 2)) / 3
    assert att >= 0.85
    over = sum(simulate_plan(doc, rate_rps=1.3 * g, duration_s=1200.0, seed=s).attainment for s in (0, 1, 2)) / 3
    assert over < 0.7


def test_unknown_mode_is_an_input_error():
    with pytest.raises(PlannerInputError, match="--mode: .*multiplex"):
        optimize(build_request("llama-3.1-8b", workload="isl=512,osl=64", gpus="h100_sxm:1", mode="semi"))
