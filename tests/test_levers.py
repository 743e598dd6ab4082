"""Every lever reaches every consumer through the one instance builder (planner/instance.py): setting it moves
the same numbers in the plan's latencies, its energy and the report's breakdown, and leaves alone what it does
not touch physically (a P -> D link or a KV codec does not change an iteration's ops).

One fixed P/D plan — a prefill and a decode instance of Llama-3.1-70B on H100 TP4 at 1 req/s — is evaluated
with each lever on and off, through the functions `planner optimize` and the report use."""

from __future__ import annotations

from dataclasses import replace

import pytest

from planner.capacity.serving import role_capacity
from planner.core.model import load_model
from planner.core.parallel import ParallelConfig
from planner.core.workload import RequestClass, Slo
from planner.instance import InstanceBuilder, Levers
from planner.levers.energy import instance_watts
from planner.levers.spec import parse_spec
from planner.render.report import _breakdown_html
from planner.search.calibrate import Calibration
from planner.search.candidates import Candidate
from planner.search.optimize import Request, _instance, instance_builder
from planner.search.plan import Plan

CLS = RequestClass("chat", 2048, 256, 1.0, Slo(2000.0, 50.0, 90.0))
PAR = ParallelConfig(4, 1, 1, 1)
BASE = Request(load_model("llama-3.1-70b"), (CLS,), inventory={"h100_sxm": 8})
LEVERS = {  # lever -> (the request with it set, the outputs it must move)
    "calibration": (replace(BASE, levers=Levers(calibration=Calibration({"h100_sxm": {"memory": 0.5, "gemm": {"bf16": 0.4}}}))),
                    {"ttft", "tpot", "watts", "breakdown"}),
    # a cap lowers the SM clock: prefill slows, the memory-bound decode at this batch does not (planner/levers/energy.py)
    "power_cap": (replace(BASE, levers=Levers(power_cap_w={"h100": 400.0})), {"ttft", "watts", "breakdown"}),
    "spec": (replace(BASE, levers=Levers(spec=parse_spec("draft=llama-3.1-8b,k=2,accept=0.8"))), {"tpot", "watts", "breakdown"}),
    "kv_compression": (replace(BASE, levers=Levers(kv_compression=8.0)), {"ttft"}),
    "link": (replace(BASE, levers=Levers(link_gbps=1.0)), {"ttft"}),
    "kv_dtype": (replace(BASE, kv_dtype="fp8"), {"ttft", "tpot", "watts", "breakdown"}),
}


def outputs(req: Request) -> dict:
    """The plan's TTFT and TPOT, its watts and its breakdown HTML, each computed the way optimize and the report
    compute them, for instances built by the request's builder."""
    builder, classes = instance_builder(req), {CLS.name: CLS}
    insts, watts = [], 0.0
    for role in ("prefill", "decode"):
        setup = builder.build("h100_sxm", PAR, 16384, 1.0, spec_k=2 if req.levers.spec and role == "decode" else 0)
        cap = {CLS.name: role_capacity(setup, role, CLS)}
        cand = Candidate(setup, role, cap, setup.memory(CLS.isl + CLS.osl).max_batch,
                         spec_k=(2 if role == "decode" else None) if req.levers.spec else None)
        insts.append(_instance(cand, 1, {CLS.name: CLS.rate_rps}, classes))
        watts += instance_watts(setup, role, {CLS.name: CLS.rate_rps}, classes,
                                {CLS.name: cap[CLS.name].rate_rps})
    plan = Plan(1, "", "disagg", 1.0, 256.0, 32.0, 1.0, 1.0, {"h100_sxm": 8}, tuple(insts), {}, "")
    return {"ttft": insts[0].ttft_ms, "tpot": insts[1].tpot_ms, "watts": watts,
            "breakdown": _breakdown_html(plan, req)}


@pytest.fixture(scope="module")
def off() -> dict:
    return outputs(BASE)


@pytest.mark.parametrize("lever", sorted(LEVERS))
def test_a_lever_moves_what_it_changes_in_latency_energy_and_breakdown_and_nothing_else(off, lever):
    req, moved = LEVERS[lever]
    on = outputs(req)
    assert {k for k in on if on[k] != off[k]} == moved


def test_the_builder_applies_calibration_before_the_power_cap():
    """Both orders give one GPU today (disjoint fields); the builder's is calibrated efficiencies on the capped
    clock: efficiencies from the calibration, peak FLOP/s and TDP from the cap."""
    req = replace(BASE, levers=Levers(calibration=LEVERS["calibration"][0].levers.calibration, power_cap_w={"h100_sxm": 400.0}))
    gpu = instance_builder(req).gpu("h100_sxm")
    plain = instance_builder(BASE).gpu("h100_sxm")
    assert gpu.efficiency.memory == 0.5 and gpu.tdp_w == 400.0
    assert gpu.peak_tflops["bf16"] < plain.peak_tflops["bf16"]


def test_every_instance_of_a_request_carries_its_levers():
    req = replace(LEVERS["link"][0], levers=Levers(kv_compression=4.0, link_gbps=1.0), kv_dtype="fp8")
    s = instance_builder(req).build("h100", PAR, 2048, 1.2)
    assert (s.gpu.name, s.link_gbps, s.kv_compression, s.kv_dtype, s.chunk, s.skew, s.spec) == \
        ("h100_sxm", 1.0, 4.0, "fp8", 2048, 1.2, None)


@pytest.mark.parametrize("lever", sorted(LEVERS))
def test_simulate_rebuilds_the_same_instance_from_the_plan_document(lever):
    """`planner simulate` reads the levers the plan JSON records (report._levers) and builds each instance with
    the same builder: the instance it simulates is the instance the plan's latencies and energy came from."""
    from planner.simulate.plan_io import _document, _instance_setup

    req, _ = LEVERS[lever]
    doc = _document({"levers": req.levers.to_json()}, req.engine, req.dtype, req.kv_dtype, req.levers.calibration)
    spec_k = 2 if req.levers.spec else 0
    builder = InstanceBuilder(req.model, doc.engine.name, doc.dtype, doc.kv_dtype, doc.levers)
    simulated = _instance_setup(builder, "h100_sxm", PAR, 16384, 1.0, spec_k, "i")
    assert simulated == instance_builder(req).build("h100_sxm", PAR, 16384, 1.0, spec_k=spec_k)
    assert simulated != instance_builder(BASE).build("h100_sxm", PAR, 16384, 1.0)  # the lever reached it
