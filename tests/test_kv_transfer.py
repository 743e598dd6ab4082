"""KV-cache precision and P/D transfer (planner/levers/kvtransfer.py, issue 8): fp8 / int4 KV follow through memory,
bandwidth and max batch; --kv-compression shrinks the shipped bytes; --link puts the P and D pools behind one
slower link, which the fleet MILP respects."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import hwdb
from cli import app
from planner.capacity.estimate import Setup
from planner.capacity.serving import decode_capacity, kv_handoff_s, prefill_capacity
from planner.core.errors import PlannerInputError
from planner.core.model import load_model
from planner.core.parallel import ParallelConfig
from planner.core.workload import RequestClass as Class
from planner.core.workload import Slo
from planner.levers.kvtransfer import parse_bandwidth_gbps, parse_compression, parse_link
from planner.perf.step import StepShape
from solvers import InstanceType, MixProblem, RequestClass, SolverInputError, solve_mix

GPU = hwdb.load_gpu("h100_sxm")
ENGINE = hwdb.load_engine("vllm").for_gpu(GPU)
MODEL = load_model("llama-3.1-70b")
PAR = ParallelConfig(4, 1, 1, 1)


def setup(kv_dtype="bf16", **kw) -> Setup:
    return Setup(MODEL, GPU, PAR, ENGINE, "bf16", kv_dtype, 16384, **kw)


@pytest.mark.parametrize("text,gbps", [("100Gbps", 12.5), ("400Gb/s", 50.0), ("25GBps", 25.0), ("12.5GB/s", 12.5),
                                       ("1.6Tbps", 200.0), ("800Mbps", 0.1)])
def test_bandwidth_units_bits_and_bytes(text, gbps):
    assert parse_bandwidth_gbps(text) == pytest.approx(gbps)
    assert parse_link(f"prefill-decode={text}") == pytest.approx(gbps)


@pytest.mark.parametrize("bad", ["prefill-decode=100", "decode=100Gbps", "prefill-decode=0Gbps", "100Gbps",
                                 "prefill-decode=fastGbps"])
def test_bad_links_name_the_flag(bad):
    with pytest.raises(PlannerInputError, match="--link"):
        parse_link(bad)


def test_compression_ratio_must_be_at_least_one():
    assert parse_compression("4") == 4.0
    for bad in ("0.5", "x", "inf", "nan"):
        with pytest.raises(PlannerInputError, match="--kv-compression"):
            parse_compression(bad)


# ---- KV precision ---------------------------------------------------------------------------------------------

def test_smaller_kv_dtypes_hold_more_sequences_read_fewer_bytes_and_ship_fewer():
    bf16, fp8, int4 = setup("bf16"), setup("fp8"), setup("int4")
    batches = [s.memory(4096).max_batch for s in (bf16, fp8, int4)]
    assert batches[0] < batches[1] < batches[2] or batches[2] == ENGINE.max_num_seqs
    reads = [{o.name: o for o in s.step(StepShape(64, 4096)).ops}["attn_decode"].bytes for s in (bf16, fp8, int4)]
    assert reads[0] > reads[1] > reads[2]
    assert reads[2] / reads[0] == pytest.approx((0.5 + 2 / 128) / 2, rel=0.05)
    ship = [kv_handoff_s(s, 4096) for s in (bf16, fp8, int4)]
    assert ship[0] > ship[1] > ship[2]


def test_int4_kv_raises_decode_capacity_where_kv_memory_binds():
    slo = Slo(ttft_ms=3000, tpot_ms=100, percentile=90)
    long = Class("long", 8192, 1024, 0.0, slo)
    bf16, int4 = decode_capacity(setup("bf16"), long), decode_capacity(setup("int4"), long)
    assert bf16.binding == "kv_memory" and int4.rate_rps > 1.5 * bf16.rate_rps


# ---- transfer ------------------------------------------------------------------------------------------------

def test_compression_divides_the_shipped_bytes_and_a_slow_link_slows_the_handoff():
    kv = MODEL.kv_bytes_per_sequence(4096)
    fast, slow = kv_handoff_s(setup(), 4096), kv_handoff_s(setup(link_gbps=3.125), 4096)
    assert slow == pytest.approx(kv / 3.125e9, rel=0.01) and slow > 5 * fast
    assert kv_handoff_s(setup(kv_compression=4.0, link_gbps=3.125), 4096) == pytest.approx(slow / 4, rel=0.01)
    prompt = Class("p", 4096, 1, 0.0, Slo(ttft_ms=1000, tpot_ms=50, percentile=90))
    assert prefill_capacity(setup(link_gbps=3.125), prompt).rate_rps < prefill_capacity(setup(), prompt).rate_rps
    assert prefill_capacity(setup(kv_compression=4.0, link_gbps=3.125), prompt).rate_rps > \
        prefill_capacity(setup(link_gbps=3.125), prompt).rate_rps


def test_the_milp_link_row_caps_what_all_prefill_instances_ship_together():
    p = InstanceType("p", {"g": 1}, 1.0, frozenset({"prefill"}), {"c": 10.0})
    d = InstanceType("d", {"g": 1}, 1.0, frozenset({"decode"}), {"c": 10.0})
    base = MixProblem((p, d), (RequestClass("c", 30.0, 1e9),), inventory={"g": 8}, max_alpha=1.0)
    free = solve_mix(base)[0]
    capped = solve_mix(MixProblem((p, d), (RequestClass("c", 30.0, 1e9),), inventory={"g": 8}, max_alpha=1.0,
                                  kv_link_bytes_per_s=12e9))[0]
    assert free.alpha * 30 == pytest.approx(30.0, rel=1e-6)
    assert capped.alpha * 30 == pytest.approx(12.0, rel=1e-6)
    assert "kv_link" in (capped.binding or "")
    with pytest.raises(SolverInputError, match="kv_link_bytes_per_s"):
        solve_mix(MixProblem((p, d), (RequestClass("c", 30.0, 1e9),), kv_link_bytes_per_s=0.0))


ARGS = ["optimize", "llama-3.1-70b", "--workload", "isl=4096,osl=256,rate=30", "--slo", "ttft=3s,tpot=40ms",
        "--gpus", "h100_sxm:16", "--top", "1", "--format", "json", "--quiet"]


def best(*extra) -> dict:
    res = CliRunner().invoke(app, ARGS + list(extra))
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["plans"][0]


def test_a_slow_cross_site_link_pushes_the_plan_to_agg_and_compression_wins_disagg_back():
    local = best()
    slow = best("--link", "prefill-decode=25Gbps")
    squeezed = best("--link", "prefill-decode=25Gbps", "--kv-compression", "4")
    assert local["mode"] == "disagg"
    assert slow["mode"] == "agg" and slow["goodput_rps"] < 0.9 * local["goodput_rps"]
    assert squeezed["mode"] == "disagg" and squeezed["goodput_rps"] > 1.2 * slow["goodput_rps"]
    assert "link" in squeezed["binding"]
    # what crosses the link fits it: served rate × KV bytes / R ≤ 25 Gb/s
    assert squeezed["goodput_rps"] * MODEL.kv_bytes_per_sequence(4096) / 4 <= 3.125e9 * (1 + 1e-6)
