"""Speculative decoding (planner/levers/spec.py, issue 8): the formulas, their effect on decode / collocated capacity,
the optimiser's choice of k, and the plan / launch output."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

import hwdb
from cli import app
from planner.capacity.estimate import Setup
from planner.capacity.serving import collocated_capacity, decode_capacity, role_capacity
from planner.core.errors import PlannerInputError
from planner.core.model import load_model
from planner.core.parallel import ParallelConfig
from planner.core.workload import RequestClass, Slo
from planner.instance import InstanceBuilder, Levers
from planner.levers.spec import expected_tokens, parse_spec, resolve
from planner.perf.step import StepShape, step_time
from planner.search.candidates import SearchSpace, best_spec_depth

GPU = hwdb.load_gpu("h100_sxm")
ENGINE = hwdb.load_engine("vllm").for_gpu(GPU)
TARGET = load_model("llama-3.1-70b")
PAR = ParallelConfig(4, 1, 1, 1)
TIGHT = Slo(ttft_ms=2000, tpot_ms=20, percentile=90)  # below the 70B's TPOT at any useful batch
ISL, OSL = 1024, 512


def chat(slo: Slo) -> RequestClass:
    return RequestClass("c", ISL, OSL, 0.0, slo)


def setup(spec_text: str | None = None, k: int = 0, chunk: int = 4096) -> Setup:
    base = Setup(TARGET, GPU, PAR, ENGINE, "bf16", "bf16", chunk)
    return replace(base, spec=resolve(parse_spec(spec_text), TARGET, PAR, k)) if spec_text else base


# ---- formulas ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("a,k,e", [(0.0, 4, 1.0), (1.0, 4, 5.0), (0.5, 2, 1.75), (0.8, 1, 1.8), (0.7, 0, 1.0)])
def test_expected_tokens_is_leviathans_geometric_sum(a, k, e):
    assert expected_tokens(a, k) == pytest.approx(e)
    assert expected_tokens(a, k) == pytest.approx(sum(a ** i for i in range(k + 1)))


def test_parse_spec_accepts_both_drafters_and_names_the_field_on_bad_input():
    c = parse_spec("draft=llama-3.1-8b,k=4,accept=0.7")
    assert (c.method, c.draft, c.k_max, c.accept) == ("draft", "llama-3.1-8b", 4, 0.7)
    assert parse_spec("mtp,k=1,accept=0.8").method == "mtp"
    for bad in ("k=4,accept=0.7", "mtp,k=0,accept=0.5", "mtp,k=2,accept=1.5", "mtp,k=2", "mtp,k=2,accept=0.5,x=1"):
        with pytest.raises(PlannerInputError, match="--spec"):
            parse_spec(bad)


def test_step_time_is_verify_plus_k_drafts_over_expected_tokens():
    s = setup("draft=llama-3.1-8b,k=3,accept=0.6", k=3)
    b, ctx = 32.0, 1280.0
    verify = step_time(TARGET, GPU, PAR, StepShape(b, ctx, 0.0, 0.0, 4), engine=ENGINE)
    draft = step_time(s.spec.draft, GPU, s.spec.draft_par, StepShape(b, ctx), engine=ENGINE).gpu_s
    want = (verify.time_s + 3 * draft) / expected_tokens(0.6, 3)
    assert s.step(StepShape(b, ctx)).time_s == pytest.approx(want, rel=1e-12)


def test_verify_runs_k_plus_1_tokens_through_the_gemms_but_reads_the_kv_once():
    one = step_time(TARGET, GPU, PAR, StepShape(64, 2048), engine=ENGINE)
    five = step_time(TARGET, GPU, PAR, StepShape(64, 2048, 0, 0, 5), engine=ENGINE)
    ops1 = {o.name: o for o in one.ops}
    ops5 = {o.name: o for o in five.ops}
    assert ops5["mlp_gate_up"].flops == pytest.approx(5 * ops1["mlp_gate_up"].flops)
    assert ops5["attn_decode"].flops == pytest.approx(5 * ops1["attn_decode"].flops)
    kv_read = 64 * 2048 * TARGET.kv_bytes_per_token() / PAR.tp
    assert ops5["attn_decode"].bytes < 1.1 * kv_read  # not 5× the cache


def test_the_draft_takes_memory_so_the_max_batch_shrinks():
    assert setup("draft=llama-3.1-8b,k=2,accept=0.8", k=2).memory(ISL + OSL).max_batch < \
        setup().memory(ISL + OSL).max_batch
    mtp = Setup(TARGET, GPU, PAR, ENGINE, "bf16", "bf16", 4096)
    mtp = replace(mtp, spec=resolve(parse_spec("mtp,k=1,accept=0.8"), TARGET, PAR, 1))
    assert setup().memory(ISL + OSL).max_batch > mtp.memory(ISL + OSL).max_batch > \
        setup("draft=llama-3.1-8b,k=1,accept=0.8", k=1).memory(ISL + OSL).max_batch


# ---- capacity ---------------------------------------------------------------------------------------------------

def test_speculation_raises_decode_capacity_at_a_tight_tpot_for_a_memory_bound_model():
    plain = decode_capacity(setup(), chat(TIGHT)).rate_rps
    spec = decode_capacity(setup("draft=llama-3.1-8b,k=1,accept=0.8", k=1), chat(TIGHT)).rate_rps
    assert spec > 1.5 * plain > 0
    agg_plain = collocated_capacity(setup(), chat(TIGHT)).rate_rps
    agg_spec = collocated_capacity(setup("draft=llama-3.1-8b,k=2,accept=0.8", k=2), chat(TIGHT)).rate_rps
    assert agg_spec > 1.5 * agg_plain > 0


@pytest.mark.parametrize("k", [1, 2, 4])
def test_with_nothing_accepted_speculation_never_helps(k):
    slo = Slo(ttft_ms=2000, tpot_ms=30, percentile=90)
    for text in ("draft=llama-3.1-8b,k=4,accept=0", "mtp,k=4,accept=0"):
        s = setup(text, k=k)
        assert decode_capacity(s, chat(slo)).rate_rps <= decode_capacity(setup(), chat(slo)).rate_rps
        assert collocated_capacity(s, chat(slo)).rate_rps <= collocated_capacity(setup(), chat(slo)).rate_rps
        assert s.step(StepShape(8, 1280)).time_s > setup().step(StepShape(8, 1280)).time_s


@pytest.mark.parametrize("role", ["decode", "agg"])
def test_the_chosen_k_is_the_one_that_maximises_capacity(role):
    config = parse_spec("draft=llama-3.1-8b,k=4,accept=0.8")
    cls = RequestClass("c", ISL, OSL, 0.0, TIGHT)
    space = SearchSpace(InstanceBuilder(TARGET, "vllm", levers=Levers(spec=config)))
    base = setup(chunk=4096)
    caps, k, chosen = best_spec_depth(space, "h100_sxm", PAR, 4096, 1.0, role, [cls])
    each = {j: role_capacity(replace(base, spec=resolve(config, TARGET, PAR, j)), role, cls).rate_rps
            for j in range(5)}
    assert caps["c"].rate_rps == max(each.values())
    assert k == min(j for j, v in each.items() if v == max(each.values()))
    assert k >= 1 and (chosen.spec is not None and chosen.spec.k == k)


# ---- end to end ------------------------------------------------------------------------------------------------

ARGS = ["optimize", "llama-3.1-70b", "--workload", "isl=1024,osl=512,rate=40", "--slo", "ttft=2s,tpot=20ms",
        "--gpus", "h100_sxm:16", "--top", "1", "--format", "json", "--launch", "--quiet"]


def test_optimize_with_spec_serves_more_and_shows_k_and_the_launch_flag():
    runner = CliRunner()
    plain = json.loads(runner.invoke(app, ARGS).stdout)
    res = runner.invoke(app, ARGS + ["--spec", "draft=llama-3.1-8b,k=4,accept=0.8"])
    assert res.exit_code == 0, res.output
    spec = json.loads(res.stdout)
    assert spec["plans"][0]["goodput_rps"] > 1.2 * plain["plans"][0]["goodput_rps"]
    assert all("spec_k" not in i for p in plain["plans"] for i in p["instances"])
    decoding = [i for i in spec["plans"][0]["instances"] if i["role"] in ("agg", "decode")]
    assert decoding and all(0 <= i["spec_k"] <= 4 for i in decoding)
    shells = " ".join(c["shell"] for c in spec["plans"][0]["launch"])
    if any(i["spec_k"] for i in decoding):
        assert "--speculative-config" in shells and '"method":"draft_model"' in shells


def test_a_draft_with_another_vocabulary_is_bad_input():
    res = CliRunner().invoke(app, ARGS + ["--spec", "draft=qwen3-8b,k=2,accept=0.7"])
    assert res.exit_code == 2 and "--spec" in res.output
