"""planner simulate: the discrete-event simulation of a plan, and its cross-check of the analytical model.

The cross-checks average three seeds of 20 simulated minutes: a single run's attainment moves by a few points
from seed to seed (the batch and the prompt queue wander on the time scale of a request's life)."""

import json
import math

import pytest

from planner.capacity.estimate import Setup
from planner.core.errors import PlannerInputError
from planner.perf.step import StepShape
from planner.render.jsonio import canonical_json
from planner.render.report import result_json
from planner.search.optimize import optimize
from planner.search.scenario import build_request
from planner.simulate import WARMUP_FRACTION, load_plan_json, load_trace_csv, simulate_plan

SEEDS = (0, 1, 2)
P = 0.90  # the SLO percentile of every plan below


def plan_doc(model, slo, workload, gpus, mode="auto"):
    req = build_request(model, slo=slo, workload=workload, gpus=gpus, mode=mode)
    return result_json(optimize(req), req)


def attainment(doc, multiple, duration_s=1200.0, **kw):
    rate = doc["plans"][0]["goodput_rps"] * multiple
    runs = [simulate_plan(doc, rate_rps=rate, duration_s=duration_s, seed=s, **kw) for s in SEEDS]
    return sum(r.attainment for r in runs) / len(runs)


@pytest.fixture(scope="module")
def collocated():
    """One chunked-prefill instance whose goodput the TPOT percentile sets."""
    doc = plan_doc("llama-3.1-8b", "ttft=500ms,tpot=20ms,p=90", "isl=1024,osl=512", "h100_sxm:1", "agg")
    assert [(i["role"], i["count"]) for i in doc["plans"][0]["instances"]] == [("agg", 1)]
    return doc


@pytest.fixture(scope="module")
def disaggregated():
    """One prefill + one decode instance; the prefill's TTFT percentile sets the goodput."""
    doc = plan_doc("llama-3.1-70b", "ttft=2s,tpot=50ms,p=90", "isl=2048,osl=256", "h100_sxm:8", "disagg")
    roles = sorted(i["role"] for i in doc["plans"][0]["instances"])
    assert roles == ["decode", "prefill"]
    return doc


@pytest.fixture(scope="module")
def pooled():
    """Eight collocated instances behind one router."""
    doc = plan_doc("llama-3.1-8b", "ttft=500ms,tpot=20ms,p=90", "isl=1024,osl=512", "h100_sxm:8", "agg")
    assert sum(i["count"] for i in doc["plans"][0]["instances"]) == 8
    return doc


# ---- cross-checks of the analytical model ------------------------------------------------------------------

def test_collocated_plan_attains_the_slo_percentile_at_its_predicted_goodput(collocated):
    assert attainment(collocated, 1.0) == pytest.approx(P, abs=0.05)


def test_collocated_plan_falls_clearly_below_the_percentile_at_1_3x_its_goodput(collocated):
    assert attainment(collocated, 1.3) < P - 0.2


def test_disaggregated_plan_attains_the_slo_percentile_at_its_predicted_goodput(disaggregated):
    assert attainment(disaggregated, 1.0) == pytest.approx(P, abs=0.05)


def test_disaggregated_plan_falls_clearly_below_the_percentile_at_1_3x_its_goodput(disaggregated):
    assert attainment(disaggregated, 1.3) < P - 0.2


def test_random_routing_over_many_instances_matches_the_per_instance_model(pooled):
    # the analytical model sees each instance alone with Poisson arrivals: what random routing gives it
    assert attainment(pooled, 1.0, duration_s=300.0, router="random") == pytest.approx(P, abs=0.05)


def test_least_work_routing_over_many_instances_only_adds_headroom(pooled):
    # balancing smooths each instance's arrivals, so the plan holds its SLOs at (and a little beyond) the
    # predicted goodput; it still collapses well before 1.3x
    assert attainment(pooled, 1.0, duration_s=300.0) >= P - 0.05
    assert attainment(pooled, 1.3, duration_s=300.0) < P - 0.2


# ---- the engine model ----------------------------------------------------------------------------------------

def _setup_of(doc, k=0):
    import hwdb
    from planner.core.model import load_model
    from planner.core.parallel import ParallelConfig

    inst = doc["plans"][0]["instances"][k]
    gpu = hwdb.load_gpu(inst["gpu"])
    return Setup(load_model(doc["model"]), gpu, ParallelConfig(inst["tp"], inst["pp"], inst["ep"], inst["dp"]),
                 hwdb.load_engine(doc["engine"]).for_gpu(gpu), doc["dtype"], doc["kv_dtype"], inst["chunk_tokens"],
                 inst["skew"])


def test_a_lone_request_sees_the_step_model_latencies(collocated):
    setup = _setup_of(collocated)
    isl, osl = 1024, 65
    r = simulate_plan(collocated, trace=[(0.0, isl, osl)])
    prefill = setup.step(StepShape(prefill_tokens=isl, prefill_seq_len=isl)).time_s
    decode = setup.step(StepShape(decode_seqs=1, decode_context=isl + osl / 2)).time_s
    assert r.completed == r.requests == 1
    assert r.ttft_ms["p50"] == pytest.approx(prefill * 1e3, rel=1e-9)
    assert r.tpot_ms["p50"] == pytest.approx(decode * 1e3, rel=0.01)  # context rounded to 64 tokens


def test_a_long_prompt_is_prefilled_in_chunks_of_the_budget(collocated):
    setup = _setup_of(collocated)
    chunk = setup.chunk
    r = simulate_plan(collocated, trace=[(0.0, 2 * chunk + 100, 2)])
    full = setup.step(StepShape(prefill_tokens=chunk, prefill_seq_len=2 * chunk + 100)).time_s
    assert r.ttft_ms["p50"] > 2 * full * 1e3 * 0.99  # two full chunks and the rest: three iterations


def test_disaggregated_ttft_includes_the_kv_hand_off(disaggregated):
    from planner.capacity.serving import kv_handoff_s

    prefill = _setup_of(disaggregated, [i["role"] for i in disaggregated["plans"][0]["instances"]].index("prefill"))
    r = simulate_plan(disaggregated, trace=[(0.0, 2048, 2)])
    alone = prefill.step(StepShape(prefill_tokens=2048, prefill_seq_len=2048)).time_s
    assert r.ttft_ms["p50"] == pytest.approx((alone + kv_handoff_s(prefill, 2048)) * 1e3, rel=1e-9)


def test_requests_larger_than_every_kv_cache_are_dropped(collocated):
    r = simulate_plan(collocated, trace=[(0.0, 512, 64), (0.1, 50_000_000, 64), (0.2, 512, 64)])
    assert (r.requests, r.completed, r.dropped) == (3, 2, 1)
    assert r.attainment < 1.0 and r.notes


def test_utilisation_is_low_at_low_load_and_full_when_overloaded(collocated):
    # busy = iterating: a decode keeps the engine busy for its whole life (osl iterations), so only a load
    # far below capacity leaves it idle most of the time
    rate = collocated["plans"][0]["goodput_rps"]
    light = simulate_plan(collocated, rate_rps=0.005 * rate, duration_s=1200.0)
    heavy = simulate_plan(collocated, rate_rps=2.0 * rate, duration_s=120.0)
    assert light.instances[0].utilization < 0.5
    assert heavy.instances[0].utilization > 0.99
    assert heavy.attainment < 0.1


# ---- API behaviour -------------------------------------------------------------------------------------------

def test_the_same_seed_gives_the_same_result_and_another_seed_does_not(disaggregated):
    a, b, c = (simulate_plan(disaggregated, duration_s=120.0, seed=s).to_json() for s in (7, 7, 8))
    for d in (a, b, c):
        d.pop("wall_s")
    assert a == b
    assert a != c


def test_the_default_rate_is_the_plans_goodput(disaggregated):
    r = simulate_plan(disaggregated, duration_s=60.0)
    assert r.rate_rps == pytest.approx(disaggregated["plans"][0]["goodput_rps"])
    assert r.predicted_goodput_rps == pytest.approx(r.rate_rps)


def test_the_first_tenth_of_arrivals_is_warm_up(collocated):
    r = simulate_plan(collocated, duration_s=60.0)
    assert r.measured == r.requests - int(r.requests * WARMUP_FRACTION)
    assert r.completed + r.dropped == r.measured


def test_the_result_serialises_to_canonical_json(disaggregated):
    r = simulate_plan(disaggregated, duration_s=60.0)
    doc = json.loads(canonical_json(r.to_json()))
    assert {"ttft_ms", "tpot_ms", "attainment", "goodput_rps", "per_class", "instances", "wall_s"} <= set(doc)
    assert set(doc["ttft_ms"]) == {"p50", "p90", "p99"}
    assert [i["role"] for i in doc["instances"]] == ["prefill", "decode"]
    assert 0 <= doc["instances"][0]["utilization"] <= 1


def test_every_class_of_a_multi_class_plan_is_reported(tmp_path):
    wl = tmp_path / "w.yaml"
    wl.write_text("classes:\n  - {name: chat, isl: 512, osl: 128}\n  - {name: docs, isl: 4096, osl: 256}\n")
    doc = plan_doc("llama-3.1-8b", "ttft=2s,tpot=50ms", str(wl), "h100_sxm:2")
    r = simulate_plan(doc, duration_s=120.0)
    assert set(r.per_class) == {"chat", "docs"}
    assert sum(c.requests for c in r.per_class.values()) == r.measured
    assert sum(c.rate_rps for c in r.per_class.values()) == pytest.approx(r.rate_rps)


def test_a_plan_file_round_trips_through_canonical_json(tmp_path, collocated):
    path = tmp_path / "plan.json"
    path.write_text(canonical_json(collocated))
    a = simulate_plan(load_plan_json(path), duration_s=30.0).to_json()
    b = simulate_plan(collocated, duration_s=30.0).to_json()
    a.pop("wall_s"), b.pop("wall_s")
    assert a["requests"] == b["requests"] and a["attainment"] == pytest.approx(b["attainment"], abs=0.02)


@pytest.mark.parametrize("text,match", [(None, "not found"), ("{nope", "malformed JSON"), ('{"a": 1}', "no 'plans'")])
def test_an_unreadable_plan_file_is_bad_input(tmp_path, text, match):
    path = tmp_path / "plan.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(PlannerInputError, match=match):
        load_plan_json(path)


def test_an_unknown_plan_rank_is_bad_input(collocated):
    with pytest.raises(PlannerInputError, match="rank 99"):
        simulate_plan(collocated, rank=99)


@pytest.mark.parametrize("doc,field", [({}, "workload"), ([], "JSON object"),
                                       ({"model": "llama-3.1-8b", "plans": [], "workload": [
                                           {"name": "a", "isl": 1, "osl": 1, "slo": {"ttft_ms": 1, "tpot_ms": 1}}]},
                                        "plans")])
def test_a_document_that_is_not_an_optimize_plan_is_bad_input(doc, field):
    with pytest.raises(PlannerInputError, match=field):
        simulate_plan(doc)


def test_an_unknown_router_is_bad_input(collocated):
    with pytest.raises(PlannerInputError, match="router"):
        simulate_plan(collocated, duration_s=10.0, router="fastest")


# ---- traces --------------------------------------------------------------------------------------------------

def test_a_trace_csv_is_replayed_request_by_request(tmp_path, disaggregated):
    path = tmp_path / "trace.csv"
    path.write_text("arrival_s,isl,osl,class\n0.5,1000,20,default\n0.0,2048,64,\n1.0,300,1,default\n")
    rows = load_trace_csv(path)
    assert rows == [(0.0, 2048, 64, None), (0.5, 1000, 20, "default"), (1.0, 300, 1, "default")]
    r = simulate_plan(disaggregated, trace=rows)
    assert (r.requests, r.completed, r.dropped) == (3, 3, 0)
    assert r.per_class["default"].requests == 3
    assert r.ttft_ms["p50"] > 0 and not math.isinf(r.ttft_ms["p99"])


def test_a_trace_without_a_class_column_uses_the_first_class(tmp_path, collocated):
    path = tmp_path / "t.csv"
    path.write_text("arrival_s,isl,osl\n0,128,16\n0.01,128,16\n")
    assert load_trace_csv(path) == [(0.0, 128, 16, None), (0.01, 128, 16, None)]
    assert simulate_plan(collocated, trace=load_trace_csv(path)).completed == 2


@pytest.mark.parametrize("text,where", [
    ("arrival_s,isl,osl\n0,128,16\n0.5,abc,16\n", "line 3: field 'isl'"),
    ("arrival_s,isl,osl\n-1,128,16\n", "line 2: field 'arrival_s'"),
    ("arrival_s,isl,osl\n0,128,0\n", "line 2: field 'osl'"),
    ("arrival_s,isl,osl\n0,128.5,16\n", "line 2: field 'isl'"),
    ("arrival_s,isl,osl\n0,128\n", "line 2: expected 3 columns"),
    ("arrival_s,isl\n0,128\n", "line 1: header lacks column 'osl'"),
    ("arrival_s,isl,osl,priority\n0,128,16,1\n", "line 1: unknown column 'priority'"),
    ("arrival_s,isl,osl\n", "no requests"),
    ("", "file is empty"),
])
def test_bad_trace_rows_are_bad_input_naming_the_line(tmp_path, text, where):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(PlannerInputError, match=where):
        load_trace_csv(path)


def test_a_missing_trace_file_is_bad_input(tmp_path):
    with pytest.raises(PlannerInputError, match="not found"):
        load_trace_csv(tmp_path / "nope.csv")


def test_a_trace_class_outside_the_workload_is_bad_input(collocated):
    with pytest.raises(PlannerInputError, match="class 'batch'"):
        simulate_plan(collocated, trace=[(0.0, 128, 16, "batch")])
