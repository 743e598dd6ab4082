"""Energy lever (issue 8): watts and J/token per plan, --objective energy, --power-cap (planner/levers/energy.py)."""

import json

import pytest
from typer.testing import CliRunner

import hwdb
from cli import app
from planner.capacity.estimate import Setup
from planner.core.errors import PlannerInputError
from planner.core.model import load_model
from planner.core.parallel import ParallelConfig
from planner.core.workload import RequestClass, Slo
from planner.instance import Levers
from planner.levers.energy import apply_power_cap, clock_fraction, gpu_watts, parse_power_cap
from planner.perf.step import StepShape
from planner.search.optimize import Request, optimize

runner = CliRunner()
SLO = Slo(2000, 50, 90)


def _req(rate=20.0, **kw) -> Request:
    return Request(load_model("llama-3.1-8b"), (RequestClass("default", 1024, 256, rate, SLO),), top_k=2, **kw)


@pytest.fixture(scope="module")
def cost_and_energy():
    """The same 20 req/s demand, planned for cost and for energy with a free choice among five GPU types: they
    hold both plans of the default fleet (A100 + 2 L40S for cost, one H200 for energy) in half its time."""
    offer = {"a100_80g": 8, "l40s": 8, "l4": 8, "h100_sxm": 8, "h200_sxm": 8}
    return optimize(_req(objective="cost", inventory=offer)), optimize(_req(objective="energy", inventory=offer))


def test_every_plan_has_positive_joules_per_token_equal_to_watts_over_tokens(cost_and_energy):
    for res in cost_and_energy:
        for p in res.plans + res.family_bests:
            e = p.to_json()["energy"]
            assert e["watts"] > 0 and e["joules_per_token"] > 0
            assert e["joules_per_token"] == pytest.approx(e["watts"] / p.tokens_per_s, rel=1e-9)
            # between the fleet's idle draw and its draw with every GPU at TDP
            idle = sum(n * hwdb.load_gpu(g).idle_w for g, n in p.gpus.items())
            tdp = sum(n * hwdb.load_gpu(g).tdp_w for g, n in p.gpus.items())
            assert idle < e["watts"] <= tdp


def test_every_plan_reports_its_watts_and_joules_per_token(cost_and_energy):
    res, _ = cost_and_energy
    for p in res.plans + res.family_bests:
        assert p.to_json()["energy"]["watts"] > 0
        assert p.energy["joules_per_token"] == pytest.approx(p.energy["watts"] / p.tokens_per_s)


def test_objective_energy_needs_no_more_watts_than_the_cost_plan(cost_and_energy):
    cost, energy = cost_and_energy
    w_cost, w_energy = cost.plans[0].energy["watts"], energy.plans[0].energy["watts"]
    assert w_energy <= w_cost + 1e-6
    assert w_energy < 0.9 * w_cost  # here the cheapest plan (L40S prefill + A100 decode) is not the frugal one
    assert energy.plans[0].goodput_rps == pytest.approx(20.0, rel=1e-6)  # same demand, fully served
    assert energy.plans[0].cost_usd_per_h >= cost.plans[0].cost_usd_per_h - 1e-6  # $/h recomputed, not watts


def test_objective_energy_needs_no_more_watts_than_the_goodput_plan_on_a_fleet():
    fleet = {"h100_sxm": 8, "l40s": 8}
    good = optimize(_req(rate=10.0, inventory=fleet))
    frugal = optimize(_req(rate=10.0, inventory=fleet, objective="energy"))
    assert good.plans[0].goodput_rps == pytest.approx(frugal.plans[0].goodput_rps, rel=1e-6)
    assert frugal.plans[0].energy["watts"] <= good.plans[0].energy["watts"] + 1e-6


def test_power_at_activity_is_linear_between_idle_and_tdp():
    g = hwdb.load_gpu("h100_sxm")
    assert gpu_watts(g, 0.0) == g.idle_w and gpu_watts(g, 1.0) == g.tdp_w
    assert gpu_watts(g, 0.5) == pytest.approx((g.idle_w + g.tdp_w) / 2)


def test_power_cap_clock_model():
    g = hwdb.load_gpu("h100_sxm")  # 700 W TDP, 140 W loaded idle
    assert clock_fraction(g, g.idle_w + (g.tdp_w - g.idle_w) / 8) == pytest.approx(0.5)  # P_dyn ∝ f³
    capped = apply_power_cap(g, 420)
    f = ((420 - 140) / (700 - 140)) ** (1 / 3)
    assert capped.peak_tflops["bf16"] == pytest.approx(g.peak_tflops["bf16"] * f)
    assert capped.peak_tflops["fp8"] == pytest.approx(g.peak_tflops["fp8"] * f)
    assert capped.mem_bw_gbps == g.mem_bw_gbps and capped.tdp_w == 420
    assert apply_power_cap(g, 900) is g  # a cap above TDP changes nothing
    with pytest.raises(PlannerInputError, match="idle"):
        apply_power_cap(g, 100)


def test_power_cap_slows_compute_bound_prefill_more_than_memory_bound_decode():
    m = load_model("llama-3.1-8b")
    g = hwdb.load_gpu("h100_sxm")
    eng = hwdb.load_engine("vllm").for_gpu(g)

    def rates(gpu):
        s = Setup(m, gpu, ParallelConfig(), eng)
        prefill = 8192 / s.step(StepShape(prefill_tokens=8192, prefill_seq_len=2048)).time_s
        decode = 16 / s.step(StepShape(decode_seqs=16, decode_context=2048)).time_s
        return prefill, decode

    (p0, d0), (p1, d1) = rates(g), rates(apply_power_cap(g, 350))
    assert p1 / p0 < 0.85  # prefill loses most of the clock cut (f ≈ 0.72)
    assert d1 / d0 > 0.95  # decode reads weights and KV from HBM, whose bandwidth a cap leaves alone
    assert p1 / p0 < d1 / d0


def test_power_cap_lowers_goodput_and_power_of_a_fixed_fleet():
    base = optimize(Request(load_model("llama-3.1-70b"), (RequestClass("default", 2048, 256, 0.0, SLO),),
                            inventory={"h100_sxm": 8}, dtype="fp8", top_k=1))
    capped = optimize(Request(load_model("llama-3.1-70b"), (RequestClass("default", 2048, 256, 0.0, SLO),),
                              inventory={"h100_sxm": 8}, dtype="fp8", top_k=1, levers=Levers(power_cap_w={"h100": 450})))
    assert capped.plans[0].goodput_rps < base.plans[0].goodput_rps
    assert capped.plans[0].energy["watts"] < base.plans[0].energy["watts"]
    assert capped.plans[0].energy["watts"] <= 8 * 450 + 1e-6
    assert any("power cap h100_sxm 450 W" in n for n in capped.notes)


def test_parse_power_cap():
    assert parse_power_cap("h100_sxm=500, b200=700W") == {"h100_sxm": 500.0, "b200": 700.0}
    for bad in ("h100_sxm", "h100_sxm=", "=500", "h100_sxm=-5", "h100_sxm=fast", ""):
        with pytest.raises(PlannerInputError, match="--power-cap"):
            parse_power_cap(bad)


WL = ("--workload", "isl=1024,osl=256,rate=20")


@pytest.mark.parametrize("args,needle", [
    (("--power-cap", "h100_sxm=lots"), "--power-cap"),
    (("--power-cap", "h100_sxm=100"), "--power-cap"),  # below the 140 W loaded idle
    (("--power-cap", "l4=50"), "--power-cap"),  # not in the fleet
    (("--power-cap", "h100x=500"), "h100x"),  # unknown GPU
    (("--objective", "energy", "--budget", "10/h"), "--budget"),
    (("--objective", "efficiency"), "--objective"),
])
def test_bad_energy_input_exits_2_with_one_line(args, needle):
    r = runner.invoke(app, ["optimize", "llama-3.1-8b", *WL, "--gpus", "h100_sxm:2", "--quiet", *args])
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


def test_objective_energy_without_a_rate_exits_2():
    r = runner.invoke(app, ["optimize", "llama-3.1-8b", "--workload", "isl=1024,osl=256", "--objective", "energy"])
    assert r.exit_code == 2 and "rate" in r.output


def test_cli_energy_in_json_table_markdown_and_html(tmp_path):
    args = ["optimize", "llama-3.1-8b", *WL, "--gpus", "h100_sxm:2", "--top", "1", "--quiet",
            "--power-cap", "h100=500"]
    r = runner.invoke(app, [*args, "--format", "json", "--report", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)["plans"][0]
    assert plan["energy"]["joules_per_token"] == pytest.approx(plan["energy"]["watts"] / plan["tokens_per_s"])
    html = (tmp_path / "r.html").read_text()
    assert "<th>J/tok</th>" in html and 'class="jpt"' in html
    md = runner.invoke(app, [*args, "--format", "markdown"])
    assert md.exit_code == 0 and "| W | J/tok |" in md.stdout
    table = runner.invoke(app, args)
    assert table.exit_code == 0 and "J/tok" in table.stdout and "power cap h100_sxm 500 W" in table.stdout
    plain = runner.invoke(app, ["optimize", "llama-3.1-8b", *WL, "--gpus", "h100_sxm:2", "--top", "1", "--quiet"])
    assert plain.exit_code == 0 and "J/tok" in plain.stdout  # every plan carries its energy
