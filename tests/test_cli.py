"""The `planner` command line: exit codes 0 / 1 / 2, one-line errors, clean JSON on stdout."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


def test_hw_list_json_has_every_bundled_gpu():
    r = run("hw", "list", "--format", "json")
    assert r.exit_code == 0
    names = {g["name"] for g in json.loads(r.stdout)}
    assert {"h100_sxm", "h200_sxm", "b200_sxm", "a100_80g", "l4", "mi300x"} <= names


def test_hw_show_prints_sources():
    r = run("hw", "show", "h100", "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["sources"]["mem_bw_gbps"].startswith("https://")


def test_model_show_lists_minimum_gpus():
    r = run("model", "show", "llama-3.1-70b", "--format", "json")
    data = json.loads(r.stdout)
    assert r.exit_code == 0 and data["params_total"] == pytest.approx(70.55e9, rel=1e-3)
    assert data["min_gpus"]["h100_sxm"]["bf16"]["gpus"] == 4  # 141 GB of bf16 weights leave no KV room on 2
    assert data["min_gpus"]["h100_sxm"]["fp8"]["gpus"] == 2


@pytest.mark.parametrize("args,needle", [
    (("hw", "show", "h100x"), "unknown GPU 'h100x'; did you mean"),
    (("model", "show", "llama-3.1-7b"), "unknown model 'llama-3.1-7b'; did you mean"),
    (("estimate", "llama-3.1-8b", "--gpu", "h100_sxm", "--isl", "1", "--osl", "1", "--dtype", "fp7"), "--dtype"),
    (("estimate", "llama-3.1-8b", "--gpu", "h100_sxm", "--tp", "3", "--isl", "8", "--osl", "8"), "tp=3"),
    (("optimize", "llama-3.1-8b", "--workload", "isl=1024"), "missing 'osl'"),
    (("optimize", "llama-3.1-8b", "--workload", "isl=1024,osl=8", "--slo", "tpot=fast"), "--slo.tpot"),
    (("optimize", "llama-3.1-8b", "--workload", "isl=1024,osl=8", "--gpus", "h100_sxm:-1"), "--gpus"),
    (("optimize", "does-not-exist.yaml"), "does-not-exist.yaml"),
])
def test_bad_input_exits_2_with_one_line_naming_the_field(args, needle):
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_model_that_does_not_fit_exits_1_saying_by_how_much():
    r = run("estimate", "llama-3.1-70b", "--gpu", "l4", "--isl", "512", "--osl", "64")
    assert r.exit_code == 1 and "does not fit" in r.output and "GB" in r.output


def test_estimate_json_has_the_design_keys():
    r = run("estimate", "llama-3.1-8b", "--gpu", "h100_sxm", "--isl", "1024", "--osl", "128", "--batch", "16",
            "--format", "json")
    data = json.loads(r.stdout)
    assert {"ttft_ms", "tpot_ms", "throughput_tokens_per_s", "tokens_per_s_per_gpu", "goodput_rps", "memory_gb",
            "breakdown"} <= set(data)
    assert {row["bound"] for row in data["breakdown"]} <= {"compute", "memory", "link", "latency", "cpu"}


def test_optimize_json_is_clean_and_has_the_design_keys():
    r = run("optimize", "llama-3.1-8b", "--workload", "isl=1024,osl=256", "--gpus", "h100_sxm:2", "--format", "json",
            "--launch", "--top", "2", "--mode", "agg")
    data = json.loads(r.stdout)  # nothing but JSON on stdout (no HiGHS banner)
    plan = data["plans"][0]
    assert {"rank", "goodput_rps", "tokens_per_s", "tokens_per_s_per_gpu", "cost_usd_per_h", "usd_per_million_tokens",
            "gpus", "instances", "predicted", "binding"} <= set(plan)
    assert {"backend", "status", "gap", "time_s"} <= set(data["solver"])
    assert plan["launch"][0]["argv"][0] == "vllm"


def test_infeasible_optimize_exits_1_and_says_what_would_fix_it():
    r = run("optimize", "llama-3.1-70b", "--workload", "isl=1024,osl=256", "--gpus", "h100_sxm:8", "--slo",
            "tpot=2ms")
    assert r.exit_code == 1 and "floor" in r.output and "to fix:" in r.output


def test_markdown_format_is_a_table():
    r = run("optimize", "llama-3.1-8b", "--workload", "isl=1024,osl=256", "--gpus", "h100_sxm:2", "--format",
            "markdown", "--top", "1")
    assert r.exit_code == 0 and "| # | GPUs |" in r.stdout


def test_console_script_bad_input_has_no_traceback():
    r = subprocess.run([sys.executable, "-m", "cli", "optimize", "does-not-exist.yaml"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout


@pytest.mark.parametrize("args", [["hw", "list"], ["hw", "list", "--format", "json"]])
def test_a_reader_that_goes_away_gives_the_sigpipe_code_not_infeasible(args):
    """`planner … | head` must not exit 1 (infeasible) or 3 (internal) when head stops reading."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE
    r = subprocess.run([sys.executable, "-m", "cli", *args], stdout=write_end, stderr=subprocess.PIPE, timeout=60,
                       cwd=Path(__file__).resolve().parents[1])
    os.close(write_end)
    assert r.returncode == 141, r.stderr.decode()
    assert b"Traceback" not in r.stderr


def test_the_cli_imports_only_declared_dependencies():
    """typer vendors click (typer._click); `click` itself is not installed by `pip install servplan`."""
    root = Path(__file__).resolve().parents[1]
    for path in [root / "cli.py", *root.glob("planner/**/*.py"), *root.glob("solvers/*.py"), *root.glob("hwdb/*.py")]:
        for line in path.read_text().splitlines():
            assert not line.strip().startswith(("import click", "from click")), f"{path.name}: {line.strip()}"
