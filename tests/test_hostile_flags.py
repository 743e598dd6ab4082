"""Hostile command-line flags (issue 11, item 3): every subcommand answers bad flag values with exit 2 and one
message naming the flag, before doing any work; never a traceback, never a hang, never exit 0 on nonsense.
An unexpected exception inside a command is exit 3 with one line asking for a report (never exit 1, which
means infeasible); Ctrl-C is exit 130.

Each case is (id, argv, expected exit code, text the output must contain). `{dir}` in an argument is a folder
of inputs made by `hostile_inputs`. Cases that could hang run in a subprocess with a timeout.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli

M, GPU = "llama-3.1-8b", "h100_sxm"
W = "isl=1024,osl=128,rate=5"
OPT = ["optimize", M, "--workload", W, "--gpus", f"{GPU}:4", "--quiet"]
EST = ["estimate", M, "--gpu", GPU, "--isl", "1024", "--osl", "128"]
SIM = ["simulate", "{dir}/plan.json", "--duration-s", "30"]
CAL = ["calibrate", "{dir}/m.csv"]
EXP = ["experts", "qwen3-30b-a3b", "--ep", "8"]
BIG = "9" * 400  # a digit string that float() turns into inf

# (id, argv, exit code, needle); a 5th element True runs the case in a subprocess with a timeout (may hang)
CASES = [
    # optimize: --gpus
    ("gpus-1e20", OPT + ["--gpus", "h100_sxm:1e20"], 2, "--gpus"),
    ("gpus-20-digits", OPT + ["--gpus", "h100_sxm:100000000000000000000"], 2, "100,000"),
    ("gpus-over-bound", OPT + ["--gpus", "h100_sxm:100001"], 2, "--gpus"),
    ("gpus-empty", OPT + ["--gpus", ""], 2, "--gpus"),
    ("gpus-zero", OPT + ["--gpus", "h100_sxm:0"], 2, "--gpus"),
    ("gpus-no-count", OPT + ["--gpus", "h100_sxm"], 2, "--gpus"),
    ("gpus-no-name", OPT + ["--gpus", ":4"], 2, "--gpus"),
    ("gpus-superscript-digit", OPT + ["--gpus", "h100_sxm:²"], 2, "--gpus"),
    # optimize: --workload
    ("workload-isl-inf", OPT + ["--workload", "isl=inf,osl=128"], 2, "--workload.isl"),
    ("workload-isl-nan", OPT + ["--workload", "isl=nan,osl=128"], 2, "--workload.isl"),
    ("workload-isl-1e400", OPT + ["--workload", "isl=1e400,osl=1"], 2, "--workload.isl"),
    ("workload-osl-negative", OPT + ["--workload", "isl=1024,osl=-5"], 2, "--workload.osl"),
    ("workload-rate-inf", OPT + ["--workload", "isl=1024,osl=128,rate=inf"], 2, "--workload.rate"),
    ("workload-rate-huge", OPT + ["--workload", "isl=1024,osl=128,rate=1e12"], 2, "--workload.rate"),
    ("workload-beyond-context", OPT + ["--workload", "isl=200000,osl=256"], 2, "131072"),
    ("workload-sum-beyond-context", OPT + ["--workload", "isl=131072,osl=1"], 2, "max_position_embeddings"),
    ("workload-yaml-beyond-context", OPT + ["--workload", "{dir}/long.yaml"], 2, "max_position_embeddings"),
    ("workload-empty", OPT + ["--workload", ""], 2, "--workload"),
    ("workload-gamma-cv-1e6", OPT + ["--workload", "isl=1024,osl=128,rate=5,arrival=gamma(cv=1e6)"], 2, "cv"),
    # optimize: --slo
    ("slo-bare-ttft", OPT + ["--slo", "ttft=2"], 2, "--slo: ttft=2 needs a unit (ms or s)"),
    ("slo-bare-tpot", OPT + ["--slo", "tpot=50"], 2, "tpot=50 needs a unit"),
    ("slo-ttft-1e309", OPT + ["--slo", "ttft=1e309s"], 2, "--slo.ttft"),
    ("slo-ttft-inf", OPT + ["--slo", "ttft=infs"], 2, "--slo.ttft"),
    ("slo-ttft-year", OPT + ["--slo", "ttft=100000000s"], 2, "--slo.ttft"),
    ("slo-p-100", OPT + ["--slo", "p=100"], 2, "--slo.p"),
    ("slo-p-nan", OPT + ["--slo", "p=nan"], 2, "--slo.p"),
    ("slo-empty", OPT + ["--slo", ""], 2, "--slo"),
    # optimize: other flags
    ("budget-inf", OPT + ["--budget", BIG], 2, "--budget"),
    ("budget-empty", OPT + ["--budget", ""], 2, "--budget"),
    ("budget-negative", OPT + ["--budget", "-5/h"], 2, "--budget"),
    ("time-limit-inf", OPT + ["--time-limit", "inf"], 2, "--time-limit"),
    ("time-limit-nan", OPT + ["--time-limit", "nan"], 2, "--time-limit"),
    ("time-limit-huge", OPT + ["--time-limit", "1e9"], 2, "--time-limit"),
    ("power-cap-inf", OPT + ["--power-cap", f"h100_sxm={BIG}"], 2, "--power-cap"),
    ("power-cap-empty", OPT + ["--power-cap", ""], 2, "--power-cap"),
    ("spec-mtp-without-head", OPT + ["--spec", "mtp,k=1,accept=0.8"], 2, "--spec"),
    ("spec-k-100", OPT + ["--spec", "draft=llama-3.1-8b,k=100,accept=0.5"], 2, "--spec"),
    ("kv-compression-inf", OPT + ["--kv-compression", "inf"], 2, "--kv-compression"),
    ("kv-compression-nan", OPT + ["--kv-compression", "nan"], 2, "--kv-compression"),
    ("kv-compression-huge", OPT + ["--kv-compression", "1e30"], 2, "--kv-compression"),
    ("link-inf", OPT + ["--link", f"prefill-decode={BIG}Gbps"], 2, "--link"),
    ("link-zero", OPT + ["--link", "prefill-decode=0Gbps"], 2, "--link"),
    ("sweep-bad-number", OPT + ["--sweep", "rate=1.2.3..5"], 2, "--sweep"),
    ("sweep-inf", OPT + ["--sweep", f"rate=1..{BIG}"], 2, "--sweep"),
    ("objective-bogus", OPT + ["--objective", "speed"], 2, "--objective"),
    ("mode-bogus", OPT + ["--mode", "both"], 2, "--mode"),
    ("engine-bogus", OPT + ["--engine", "tgi"], 2, "tgi"),
    ("dtype-bogus", OPT + ["--dtype", "fp7"], 2, "--dtype"),
    ("dtype-empty", OPT + ["--dtype", ""], 2, "--dtype"),
    ("kv-dtype-empty", OPT + ["--kv-dtype", ""], 2, "--kv-dtype"),
    ("objective-empty", OPT + ["--objective", ""], 2, "--objective"),
    ("mode-empty", OPT + ["--mode", ""], 2, "--mode"),
    ("engine-empty", OPT + ["--engine", ""], 2, "engine"),
    ("scenario-beyond-context", ["optimize", "{dir}/scenario.yaml", "--quiet"], 2, "max_position_embeddings"),
    ("scenario-bare-slo-number", ["optimize", "{dir}/bare-slo.yaml", "--quiet"], 2, "ttft=2 needs a unit"),
    ("top-zero", OPT + ["--top", "0"], 2, "--top"),
    ("hwdb-missing", OPT + ["--hwdb", "{dir}/no-such-folder"], 2, "no-such-folder"),
    ("calibration-missing", OPT + ["--calibration", "{dir}/none.yaml"], 2, "--calibration"),
    ("out-missing-folder", OPT + ["--out", "{dir}/missing/plan.txt"], 2, "--out"),
    ("out-is-a-directory", OPT + ["--out", "{dir}"], 2, "--out"),
    ("out-under-a-file", OPT + ["--out", "{dir}/m.csv/plan.txt"], 2, "--out"),
    ("out-not-writable", OPT + ["--out", "/proc/plan.txt"], 2, "--out: '/proc/plan.txt' is not writable"),
    ("report-missing-folder", OPT + ["--report", "{dir}/missing/r.html"], 2, "--report"),
    ("report-is-a-directory", OPT + ["--report", "{dir}"], 2, "--report"),
    # estimate
    ("estimate-batch-nan", EST + ["--batch", "nan"], 2, "--batch"),
    ("estimate-batch-inf", EST + ["--batch", "inf"], 2, "--batch"),
    ("estimate-batch-zero", EST + ["--batch", "0"], 2, "--batch"),
    ("estimate-batch-huge", EST + ["--batch", "1e12"], 2, "--batch"),
    ("estimate-rate-nan", EST + ["--rate", "nan"], 2, "--rate"),
    ("estimate-rate-inf", EST + ["--rate", "inf"], 2, "--rate"),
    ("estimate-rate-negative", EST + ["--rate", "-1"], 2, "--rate"),
    ("estimate-isl-beyond-context", EST[:-4] + ["--isl", "200000", "--osl", "256"], 2, "max_position_embeddings"),
    ("estimate-isl-zero", EST[:-4] + ["--isl", "0", "--osl", "256"], 2, "--isl"),
    ("estimate-tp-20-digits", EST + ["--tp", "100000000000000000000"], 2, "--tp"),
    ("estimate-chunk-huge", EST + ["--chunk", "1000000000000"], 2, "--chunk"),
    ("estimate-slo-bare", EST + ["--slo", "ttft=2,tpot=50ms"], 2, "needs a unit"),
    ("estimate-gpu-empty", ["estimate", M, "--gpu", "", "--isl", "8", "--osl", "8"], 2, "GPU"),
    ("estimate-engine-bogus", EST + ["--engine", "tgi"], 2, "tgi"),
    ("estimate-slo-empty", EST + ["--slo", ""], 2, "--slo"),
    ("estimate-batch-and-rate", EST + ["--batch", "4", "--rate", "1"], 2, "--batch"),
    # simulate
    ("simulate-gamma-cv-1e6", SIM + ["--arrival", "gamma(cv=1e6)"], 2, "cv", True),
    ("simulate-gamma-cv-zero", SIM + ["--arrival", "gamma(cv=0)"], 2, "cv"),
    ("simulate-gamma-cv-nan", SIM + ["--arrival", "gamma(cv=nan)"], 2, "cv"),
    ("simulate-arrival-bogus", SIM + ["--arrival", "uniform"], 2, "--arrival"),
    ("simulate-arrival-empty", SIM + ["--arrival", ""], 2, "--arrival"),
    ("simulate-seed-negative", SIM + ["--seed", "-1"], 2, "--seed"),
    ("simulate-seed-2**64", SIM + ["--seed", str(2 ** 64)], 2, "--seed"),
    ("simulate-rate-nan", SIM + ["--rate", "nan"], 2, "--rate"),
    ("simulate-rate-inf", SIM + ["--rate", "inf"], 2, "--rate"),
    ("simulate-rate-zero", SIM + ["--rate", "0"], 2, "--rate"),
    ("simulate-duration-inf", SIM + ["--duration-s", "inf"], 2, "--duration-s"),
    ("simulate-duration-nan", SIM + ["--duration-s", "nan"], 2, "--duration-s"),
    ("simulate-too-many-requests", SIM + ["--rate", "1000", "--duration-s", "86400"], 2, "--duration-s", True),
    ("simulate-plan-rank-99", SIM + ["--plan-rank", "99"], 2, "--plan-rank"),
    ("simulate-router-bogus", SIM + ["--router", "fastest"], 2, "--router"),
    ("simulate-trace-missing", SIM + ["--trace", "{dir}/none.csv"], 2, "none.csv"),
    # calibrate
    ("calibrate-out-missing-folder", CAL + ["--out", "{dir}/missing/c.yaml"], 2, "--out"),
    ("calibrate-out-is-a-directory", CAL + ["--out", "{dir}"], 2, "--out"),
    ("calibrate-measurements-missing", ["calibrate", "{dir}/none.csv", "--out", "{dir}/c.yaml"], 2, "none.csv"),
    # experts
    ("experts-time-limit-inf", EXP + ["--time-limit", "inf"], 2, "--time-limit", True),
    ("experts-time-limit-nan", EXP + ["--time-limit", "nan"], 2, "--time-limit", True),
    ("experts-time-limit-huge", EXP + ["--time-limit", "1e9"], 2, "--time-limit", True),
    ("experts-seed-negative", EXP + ["--seed", "-1"], 2, "--seed"),
    ("experts-zipf-nan", EXP + ["--zipf", "nan"], 2, "--zipf"),
    ("experts-zipf-inf", EXP + ["--zipf", "inf"], 2, "--zipf"),
    ("experts-ep-3", ["experts", "qwen3-30b-a3b", "--ep", "3"], 2, "--ep"),
    ("experts-ep-20-digits", ["experts", "qwen3-30b-a3b", "--ep", "100000000000000000000"], 2, "--ep"),
    ("experts-replicate-huge", EXP + ["--replicate", "1000000000"], 2, "--replicate", True),
    ("experts-dense-model", ["experts", M, "--ep", "8"], 2, "not a MoE model"),
    ("experts-stats-missing", EXP + ["--stats", "{dir}/none.csv"], 2, "none.csv"),
    # hw
    ("hw-show-empty", ["hw", "show", ""], 2, "GPU"),
    ("hw-show-unknown", ["hw", "show", "h1000"], 2, "h1000"),
    ("hw-list-hwdb-missing", ["hw", "list", "--hwdb", "{dir}/no-such-folder"], 2, "no-such-folder"),
    ("hw-list-hwdb-a-file", ["hw", "list", "--hwdb", "{dir}/m.csv"], 2, "m.csv"),
    ("hw-list-format-bogus", ["hw", "list", "--format", "xml"], 2, "--format"),
    # model
    ("model-show-empty", ["model", "show", ""], 2, "model"),
    ("model-show-engine-bogus", ["model", "show", M, "--engine", "tgi"], 2, "tgi"),
    ("model-show-format-bogus", ["model", "show", M, "--format", "xml"], 2, "--format"),
    ("model-show-missing-file", ["model", "show", "{dir}/none/config.json"], 2, "config.json"),
]

TIME_LIMIT_S = 60  # every case answers well inside this (the bad input is refused before any work)


def hostile_inputs(root: Path) -> Path:
    """The files the cases point at: a plan to simulate, a calibration CSV, a workload beyond the context."""
    root.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parent.parent
    (root / "plan.json").write_text((repo / "examples/goldens/llama-3.1-8b-mixed-fleet.json").read_text())
    (root / "scenario.yaml").write_text("model: llama-3.1-8b\nworkload: {isl: 131000, osl: 1000, rate: 1}\n")
    (root / "bare-slo.yaml").write_text("model: llama-3.1-8b\nworkload: {isl: 1024, osl: 128}\nslo: {ttft: 2}\n")
    (root / "long.yaml").write_text("workload:\n  classes:\n    - {name: docs, isl: 130000, osl: 2048, rate: 1}\n")
    cols = ["model", "gpu", "engine", "tp", "isl", "osl", "concurrency", "mode", "ttft_ms", "tpot_ms"]
    with open(root / "m.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for isl, conc, ttft, tpot in ((128, 1, 20, 7), (1024, 8, 90, 8), (2048, 32, 300, 11)):
            w.writerow([M, GPU, "vllm", 1, isl, 128, conc, "concurrency", ttft, tpot])
    return root


def argv(case, root: Path) -> list[str]:
    return [a.replace("{dir}", str(root)) for a in case[1]]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    return hostile_inputs(tmp_path_factory.mktemp("hostile"))


def run_case(case, root: Path, pythonpath: str | None = None) -> tuple[int | None, str, float]:
    """(exit code or None on a timeout, stdout + stderr, seconds)."""
    args = argv(case, root)
    t0 = time.monotonic()
    if pythonpath is None and not (len(case) > 4 and case[4]):
        r = CliRunner().invoke(cli.app, args)
        return r.exit_code, r.output, time.monotonic() - t0
    env = {**os.environ, "PYTHONPATH": pythonpath or str(Path(cli.__file__).parent), "COLUMNS": "200"}
    try:
        p = subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, env=env,
                           timeout=TIME_LIMIT_S, cwd=root)
    except subprocess.TimeoutExpired:
        return None, "", time.monotonic() - t0
    return p.returncode, p.stdout + p.stderr, time.monotonic() - t0


def test_the_corpus_covers_every_subcommand_with_at_least_60_cases():
    commands = {c[1][0] if c[1][0] not in ("hw", "model") else " ".join(c[1][:2]) for c in CASES}
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)
    assert {"optimize", "estimate", "simulate", "calibrate", "experts", "hw show", "hw list", "model show"} <= commands


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_flag_exits_2_naming_the_flag(case, inputs):
    code, out, seconds = run_case(case, inputs)
    assert code is not None, f"hung for {TIME_LIMIT_S} s"
    assert "Traceback" not in out, out
    assert code == case[2], out
    assert case[3] in out, out
    assert seconds < TIME_LIMIT_S


def test_read_only_output_folder_is_refused_before_the_work(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    r = CliRunner().invoke(cli.app, OPT + ["--out", str(ro / "plan.txt")])
    assert r.exit_code == 2 and "--out" in r.output and "not writable" in r.output


def test_bad_out_is_refused_before_the_solver_runs(monkeypatch, tmp_path):
    import planner.search.optimize

    def boom(*a, **k):
        raise AssertionError("the solver ran before --out was checked")

    monkeypatch.setattr(planner.search.optimize, "optimize", boom)
    r = CliRunner().invoke(cli.app, OPT + ["--out", str(tmp_path / "missing" / "plan.txt")])
    assert r.exit_code == 2 and "--out" in r.output


def test_flag_errors_are_one_line():
    r = CliRunner().invoke(cli.app, OPT + ["--gpus", "h100_sxm:1e20"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1


def test_the_context_limit_names_the_model_and_its_limit():
    r = CliRunner().invoke(cli.app, OPT + ["--workload", "isl=200000,osl=256"])
    assert r.exit_code == 2
    assert "200256" in r.output and "131072" in r.output and "llama-3.1-8b" in r.output


def test_mtp_is_accepted_for_a_model_with_an_mtp_head():
    from planner.core.model import load_model
    from planner.levers.spec import check_config, parse_spec

    check_config(parse_spec("mtp,k=1,accept=0.8"), load_model("deepseek-v3"))  # no error: it has one


@pytest.mark.parametrize("exc", [ValueError("bad value"), KeyError("missing"), RuntimeError("HiGHS failed"),
                                 ZeroDivisionError("division by zero")])
def test_an_unexpected_exception_is_exit_3_with_one_line(monkeypatch, exc):
    import planner.capacity.estimate

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(planner.capacity.estimate, "offline", boom)
    monkeypatch.delenv("SERVPLAN_DEBUG", raising=False)
    r = CliRunner().invoke(cli.app, EST)
    assert r.exit_code == 3, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output
    assert lines[0].startswith(f"internal error: {type(exc).__name__}: ") and "please report it" in lines[0]


def test_servplan_debug_re_raises_for_developers(monkeypatch):
    import planner.capacity.estimate

    def boom(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(planner.capacity.estimate, "offline", boom)
    monkeypatch.setenv("SERVPLAN_DEBUG", "1")
    r = CliRunner().invoke(cli.app, EST)
    assert isinstance(r.exception, ZeroDivisionError)


def test_ctrl_c_is_exit_130_without_a_traceback(monkeypatch):
    import planner.capacity.estimate

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(planner.capacity.estimate, "offline", interrupted)
    r = CliRunner().invoke(cli.app, EST)
    assert r.exit_code == 130 and "Traceback" not in r.output


def test_python_m_cli_runs_the_guarded_entry_point():
    r = subprocess.run([sys.executable, "-m", "cli", "optimize", M, "--workload", W, "--gpus", ""],
                       capture_output=True, text=True, timeout=TIME_LIMIT_S,
                       env={**os.environ, "PYTHONPATH": str(Path(cli.__file__).parent)})
    assert r.returncode == 2 and "--gpus" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args,flag", [
    (OPT + ["--objective", "speed"], "--objective"), (OPT + ["--mode", "both"], "--mode"),
    (OPT + ["--engine", "tgi"], "--engine"), (["hw", "list", "--format", "xml"], "--format"),
    (EST[:2] + ["--isl", "8", "--osl", "8"], "--gpu"), (EST + ["--tp", "0"], "--tp"),
    (OPT + ["--launch=yes"], "--launch"),
])
def test_a_value_typer_refuses_is_one_line_naming_the_flag(args, flag):
    """Choices, ranges and missing options that typer checks read like the flags planner checks: one line."""
    r = CliRunner().invoke(cli.app, args)
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [r.output.strip()] and r.output.startswith("error: ") and flag in r.output


def test_help_lists_the_choices_of_enum_flags():
    r = CliRunner().invoke(cli.app, ["optimize", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "goodput|cost|energy" in r.output and "auto|agg|disagg|multiplex" in r.output
