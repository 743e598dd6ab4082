"""Bursty arrivals (issue 8, BurstGPT): `arrival: poisson | gamma(cv=…) | trace.csv` per request class; the
queueing model scales waits by c_a² (Kingman) and batch variances by c_a²; `planner simulate` replays gamma
inter-arrival times. Each test would fail if the arrival process were ignored."""

import json
import math

import pytest
from typer.testing import CliRunner

import hwdb
from cli import app
from planner.capacity.estimate import Setup
from planner.capacity.queueing import gg1_wait_percentile, md1_wait_percentile
from planner.capacity.serving import collocated_capacity, decode_capacity, prefill_batch, prefill_capacity
from planner.core.errors import PlannerInputError
from planner.core.model import load_model
from planner.core.parallel import ParallelConfig
from planner.core.workload import Arrival, RequestClass, Slo, parse_arrival, parse_workload_flag, workload_from_yaml
from planner.render.report import result_json
from planner.search.optimize import optimize
from planner.search.scenario import build_request
from planner.simulate import simulate_plan

SLO = Slo(500.0, 20.0, 90.0)


def cls(ca2: float | None = None) -> RequestClass:
    """ISL 1024 / OSL 512 at SLO, Poisson (None) or gamma arrivals of squared CV ca2."""
    return RequestClass("c", 1024, 512, 0.0, SLO, None if ca2 is None else Arrival("gamma", math.sqrt(ca2)))


@pytest.fixture(scope="module")
def setup():
    g = hwdb.load_gpu("h100_sxm")
    return Setup(load_model("llama-3.1-8b"), g, ParallelConfig(1, 1, 1, 1), hwdb.load_engine("vllm").for_gpu(g),
                 chunk_tokens=8192)


# ---- parsing -----------------------------------------------------------------------------------------------

def test_workload_flag_takes_a_gamma_arrival_and_poisson_is_the_default():
    bursty = parse_workload_flag("isl=1024,osl=512,rate=10,arrival=gamma(cv=2)", SLO)[0]
    assert bursty.arrival.kind == "gamma" and bursty.arrival_ca2 == pytest.approx(4.0)
    assert parse_workload_flag("isl=1024,osl=512,rate=10", SLO)[0].arrival is None
    assert parse_workload_flag("isl=1024,osl=512,rate=10,arrival=poisson", SLO)[0].arrival_ca2 == 1.0


def test_workload_yaml_class_carries_its_arrival():
    classes = workload_from_yaml({"classes": [{"name": "chat", "isl": 512, "osl": 128, "rate": 5,
                                               "arrival": "gamma(cv=3)"},
                                              {"name": "docs", "isl": 4096, "osl": 256, "rate": 1,
                                               "arrival": {"gamma": {"cv": 0.5}}}]}, "w.yaml", SLO)
    assert [c.arrival_ca2 for c in classes] == pytest.approx([9.0, 0.25])


@pytest.mark.parametrize("bad", ["gamma(cv=-1)", "weibull(2)", "gamma(cv=x)"])
def test_bad_arrival_is_a_one_line_input_error(bad):
    with pytest.raises(PlannerInputError, match="arrival"):
        parse_arrival(bad, "--workload")


def test_trace_arrival_estimates_cv_and_rate_from_its_inter_arrival_times(tmp_path):
    # gaps alternate 0.1 s and 1.9 s: mean 1 s, std 0.9 s -> cv 0.9, rate (n - 1) / span = 1 req/s
    t, rows = 0.0, ["arrival_s,isl,osl"]
    for k in range(201):
        rows.append(f"{t:.3f},100,10")
        t += 0.1 if k % 2 == 0 else 1.9
    path = tmp_path / "trace.csv"
    path.write_text("\n".join(rows) + "\n")
    cls = parse_workload_flag(f"isl=1024,osl=512,arrival={path}", SLO)[0]
    assert cls.arrival.kind == "trace" and cls.arrival.cv == pytest.approx(0.9, abs=1e-3)
    assert cls.rate_rps == pytest.approx(1.0, rel=1e-3)


# ---- the queueing model ------------------------------------------------------------------------------------

def test_kingman_wait_is_md1_at_cv_1_and_scales_with_ca2():
    assert gg1_wait_percentile(0.9, 0.8, 1.0, 1.0) == md1_wait_percentile(0.9, 0.8, 1.0)
    assert gg1_wait_percentile(0.9, 0.8, 1.0, 4.0) == pytest.approx(4 * md1_wait_percentile(0.9, 0.8, 1.0))


@pytest.mark.parametrize("role", ["prefill", "decode", "agg"])
def test_bursty_arrivals_lower_the_capacity_of_every_role_and_smooth_ones_raise_it(setup, role):
    def cap(ca2):
        if role == "prefill":
            return prefill_capacity(setup, cls(ca2)).rate_rps
        if role == "decode":
            return decode_capacity(setup, cls(ca2)).rate_rps
        return collocated_capacity(setup, cls(ca2)).rate_rps

    poisson = cap(1.0)
    assert cap(0.25) > poisson > cap(4.0) > cap(9.0) > 0


def test_default_capacity_is_exactly_the_poisson_one(setup):
    assert collocated_capacity(setup, cls()) == collocated_capacity(setup, cls(1.0))
    assert prefill_capacity(setup, cls()) == prefill_capacity(setup, cls(1.0))


def test_prefill_energy_sees_the_same_bursty_batches_as_the_ttft_model(setup):
    """Energy's prefill occupancy is serving's batched prompt queue, burstiness included (it used to redo the
    batching without c_a², so a bursty class was charged the Poisson batches)."""
    from planner.levers.energy import activity

    rate = 0.5 * prefill_capacity(setup, cls(4.0)).rate_rps
    step, service = prefill_batch(setup, 1024, rate, 4.0)
    assert service != prefill_batch(setup, 1024, rate, 1.0)[1]
    assert activity(setup, "prefill", cls(4.0), rate) == pytest.approx(rate * service * step.gpu_s / step.time_s,
                                                                        rel=1e-12)


# ---- end to end: a bursty workload needs more capacity for the same percentile SLO ------------------------

def _doc(workload, gpus="h100_sxm:8", objective="goodput", mode="auto"):
    req = build_request("llama-3.1-70b", slo="ttft=2s,tpot=50ms,p=90", workload=workload, gpus=gpus,
                        objective=objective, mode=mode)
    return result_json(optimize(req), req)


def test_bursty_workload_gets_less_goodput_from_the_same_fleet():
    poisson = _doc("isl=2048,osl=256")["plans"][0]["goodput_rps"]
    bursty = _doc("isl=2048,osl=256,arrival=gamma(cv=3)")["plans"][0]["goodput_rps"]
    assert bursty < 0.85 * poisson


def test_bursty_workload_needs_more_gpus_at_the_same_rate():
    def gpus(doc):
        return sum(doc["plans"][0]["gpus"].values())

    # one GPU type with room to spare (16 vs 24 of 32 H100s used): the default fleet's choice of GPU type
    # (B200: 7 vs 10) costs 9x the time and says nothing more about burstiness
    poisson = _doc("isl=2048,osl=256,rate=20", gpus="h100_sxm:32", objective="cost")
    bursty = _doc("isl=2048,osl=256,rate=20,arrival=gamma(cv=3)", gpus="h100_sxm:32", objective="cost")
    assert gpus(bursty) > gpus(poisson)
    assert bursty["plans"][0]["cost_usd_per_h"] > poisson["plans"][0]["cost_usd_per_h"]


def test_plan_json_records_the_arrival_only_when_it_is_not_poisson():
    assert "arrival" not in _doc("isl=2048,osl=256", gpus="h100_sxm:4", mode="agg")["workload"][0]
    w = _doc("isl=2048,osl=256,arrival=gamma(cv=2)", gpus="h100_sxm:4", mode="agg")["workload"][0]
    assert w["arrival"] == {"kind": "gamma", "cv": 2.0}


# ---- planner simulate replays the bursts -------------------------------------------------------------------

@pytest.fixture(scope="module")
def bursty_agg():
    req = build_request("llama-3.1-8b", slo="ttft=500ms,tpot=20ms,p=90", workload="isl=1024,osl=512,"
                        "arrival=gamma(cv=2)", gpus="h100_sxm:1", mode="agg")
    return result_json(optimize(req), req)


def _attainment(doc, rate, **kw):
    return sum(simulate_plan(doc, rate_rps=rate, duration_s=1200.0, seed=s, **kw).attainment for s in (0, 1, 2)) / 3


def test_simulated_gamma_arrivals_attain_the_percentile_at_the_bursty_plans_goodput(bursty_agg):
    assert _attainment(bursty_agg, bursty_agg["plans"][0]["goodput_rps"]) == pytest.approx(0.90, abs=0.05)


def test_simulate_replays_gamma_arrivals_and_poisson_ones_are_easier(bursty_agg):
    rate = bursty_agg["plans"][0]["goodput_rps"] * 1.1
    assert _attainment(bursty_agg, rate, arrival_cv=1.0) > _attainment(bursty_agg, rate) + 0.05
    res = simulate_plan(bursty_agg, duration_s=300.0)
    assert any("gamma cv 2" in n for n in res.notes)


def test_simulate_cli_takes_an_arrival_override(tmp_path, bursty_agg):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(bursty_agg))
    out = CliRunner().invoke(app, ["simulate", str(path), "--arrival", "gamma(cv=3)", "--duration-s", "120",
                                   "--format", "json"])
    assert out.exit_code == 0, out.output
    assert any("gamma cv 3" in n for n in json.loads(out.output)["notes"])
    bad = CliRunner().invoke(app, ["simulate", str(path), "--arrival", "lognormal"])
    assert bad.exit_code == 2
